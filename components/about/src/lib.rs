//! The `about` service: the application's identity and the routing the host
//! applied to this request. A liveness check that exercises the whole path
//! (listener → router → executor → component).

use lamina_sdk::{Request, json, problem};
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct About;

impl wasip2::exports::http::incoming_handler::Guest for About {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        if request.method() != "GET" {
            return problem(out, 405, "Method Not Allowed", "only GET is supported here");
        }
        let env = |name: &str| std::env::var(name).ok();
        json(
            out,
            200,
            &serde_json::json!({
                "service": "about",
                "application": env("LAMINA_APP_NAME"),
                "version": env!("CARGO_PKG_VERSION"),
                "route": request.header("spin-matched-route"),
                "pathInfo": request.path_info(),
            }),
        );
    }
}

wasip2::http::proxy::export!(About);
