//! A JSON service's request loop: route by method and path ([`Router`]),
//! build the handler's [`Ctx`] (the request, the path's segments, the
//! verified caller, the service's database), run the handler, answer with
//! its reply or problem+json. A handler returns JSON, or starts a stream
//! once the request is validated (so a bad request still gets a 4xx).
//!
//! The caller type says what a route table needs: [`Caller`] for one
//! behind `auth = "required"` (a request without one is a 401, a route
//! the manifest forgot to protect), `Option<Caller>` for one mixing public
//! and protected routes.

use wasip2::http::types::ResponseOutparam;

use crate::Request;
use crate::api::{ApiError, Caller, Reply, decode_query, finish};
use crate::router::{Params, Router};
use crate::sql::Database;

/// What a handler needs: the request, its caller, the matched path
/// segments and the service's database.
pub struct Ctx<'a, C = Caller> {
    pub request: &'a Request,
    pub caller: C,
    pub params: Params,
    pub db: Database,
}

impl<C> Ctx<'_, C> {
    /// The path segment `name`, percent-decoded (the route table
    /// guarantees it exists).
    pub fn param(&self, name: &str) -> String {
        decode_query(self.params.get(name).unwrap_or_default())
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, key: &str) -> Option<String> {
        self.request.query(key).map(|v| decode_query(&v))
    }

    /// Every value of a repeated query parameter, percent-decoded.
    pub fn query_all(&self, key: &str) -> Vec<String> {
        self.request
            .query_all(key)
            .iter()
            .map(|v| decode_query(v))
            .collect()
    }
}

impl Ctx<'_, Caller> {
    /// The caller's user id: every query on user data filters on it.
    pub fn user(&self) -> &str {
        &self.caller.user_id
    }
}

impl Ctx<'_, Option<Caller>> {
    /// The caller, or 401.
    pub fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller
            .as_ref()
            .ok_or_else(|| ApiError::new(401, "unauthorized", "this route needs a credential"))
    }

    /// The caller if it has `role`: 401 without a caller, 403 without the
    /// role (the gateway's `roles` already refuses them; this is the
    /// component's own check, should a route lose its `roles`).
    pub fn require_role(&self, role: &str) -> Result<&Caller, ApiError> {
        let caller = self.caller()?;
        caller.ensure_role(role)?;
        Ok(caller)
    }
}

/// Who a route table serves: how its caller is read from a request.
pub trait Identity: Sized {
    fn from_request(request: &Request) -> Result<Self, ApiError>;
}

impl Identity for Caller {
    fn from_request(request: &Request) -> Result<Self, ApiError> {
        Caller::required(request)
    }
}

impl Identity for Option<Caller> {
    fn from_request(request: &Request) -> Result<Self, ApiError> {
        Ok(Caller::of(request))
    }
}

/// A response written by the handler itself (a stream), once the request
/// has been validated.
pub type Streamer<'a> = Box<dyn FnOnce(ResponseOutparam) + 'a>;

/// A route's handler: a JSON reply, or a stream.
pub enum Handler<C: 'static = Caller> {
    Json(for<'a> fn(&'a Ctx<'a, C>) -> Result<Reply, ApiError>),
    Stream(for<'a> fn(&'a Ctx<'a, C>) -> Result<Streamer<'a>, ApiError>),
}

/// Routes `request` through `router` and answers it, with `database` open
/// for the handler.
pub fn serve<C: Identity>(
    request: &Request,
    out: ResponseOutparam,
    router: &Router<Handler<C>>,
    database: &str,
) {
    let full = request.path_with_query();
    let path = full.split('?').next().unwrap_or_default();
    let method = request.method();
    let (handler, params) = match router.find(&method, path) {
        Ok(found) => found,
        Err(miss) => return finish(out, Err(miss.to_api_error(&method, path))),
    };
    let ctx = match context(request, params, database) {
        Ok(ctx) => ctx,
        Err(error) => return finish(out, Err(error)),
    };
    match handler {
        Handler::Json(handle) => finish(out, handle(&ctx)),
        Handler::Stream(start) => match start(&ctx) {
            Ok(stream) => stream(out),
            Err(error) => finish(out, Err(error)),
        },
    }
}

fn context<'a, C: Identity>(
    request: &'a Request,
    params: Params,
    database: &str,
) -> Result<Ctx<'a, C>, ApiError> {
    Ok(Ctx {
        request,
        caller: C::from_request(request)?,
        params,
        db: Database::open(database)?,
    })
}
