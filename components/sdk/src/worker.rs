//! Consuming queue topics (`[[trigger.queue]]` in spin.toml): the
//! `queue-worker` world's export, generated once here so a component only
//! implements [`Guest`] and calls [`export_queue_handler!`](crate::worker::export_queue_handler).
//!
//! ```ignore
//! struct Service;
//! impl lamina_sdk::worker::Guest for Service {
//!     fn handle(message: lamina_sdk::worker::Message) -> Result<(), String> { Ok(()) }
//! }
//! lamina_sdk::worker::export_queue_handler!(Service);
//! ```

/// The generated bindings (the export macro refers to them by path).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "queue-worker",
        with: {
            "lamina:platform/sql@0.1.0": crate::platform::sql,
            "lamina:platform/kv@0.1.0": crate::platform::kv,
            "lamina:platform/queue@0.1.0": crate::platform::queue,
            "lamina:platform/variables@0.1.0": crate::platform::variables,
            "lamina:platform/tokens@0.1.0": crate::platform::tokens,
            "lamina:platform/inference@0.1.0": crate::platform::inference,
            "lamina:platform/mail@0.1.0": crate::platform::mail,
            "lamina:platform/limits@0.1.0": crate::platform::limits,
            "lamina:platform/blobs@0.1.0": crate::platform::blobs,
            "lamina:platform/vectors@0.1.0": crate::platform::vectors,
        },
        pub_export_macro: true,
        export_macro_name: "export_queue_handler",
        default_bindings_module: "lamina_sdk::worker::bindings",
    });
}

pub use bindings::export_queue_handler;
pub use bindings::exports::lamina::platform::queue_handler::{Guest, Message};
