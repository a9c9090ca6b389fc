//! One declaration per endpoint: method, path, the access it needs and its
//! handler. [`Routes`] turns the declarations into both the axum router and
//! the [`AccessTable`] the authorisation layer reads, so a route cannot be
//! served without a declared role, and a role cannot outlive its route.

use std::collections::HashMap;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{self, MethodRouter};
use axum::Router;
use order_core::app::Role;

use crate::startup::AppState;

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no credentials looked at.
    Open,
    /// `/metrics`: open unless `ORDER_METRICS_AUTH=true` (then viewer).
    Metrics,
    /// At least this role.
    Role(Role),
    /// At least this role, and the replay rate limit.
    Limited(Role),
}

/// Route pattern (as axum's `MatchedPath` reports it) → the access each of
/// its methods needs.
#[derive(Debug, Default)]
pub struct AccessTable {
    by_path: HashMap<&'static str, Vec<(Method, Access)>>,
}

impl AccessTable {
    /// Every declared route: pattern, method and access (in no order).
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &Method, Access)> + '_ {
        self.by_path
            .iter()
            .flat_map(|(path, methods)| methods.iter().map(move |(m, a)| (*path, m, *a)))
    }

    /// The access a request with `method` on route `pattern` needs.
    pub fn access_for(&self, method: &Method, pattern: &str) -> Access {
        // HEAD is answered by GET routes.
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        // A pattern nobody declared needs an admin (fail closed).
        let Some(declared) = self.by_path.get(pattern) else {
            return Access::Role(Role::Admin);
        };
        if let Some((_, a)) = declared.iter().find(|(m, _)| m == method) {
            return *a;
        }
        // A method the path does not serve (axum answers 405): the least any
        // method of the path needs, so whoever may use the path learns the
        // `Allow`ed methods and nobody else learns anything.
        declared
            .iter()
            .map(|(_, a)| match a {
                Access::Open | Access::Metrics => None,
                Access::Role(r) | Access::Limited(r) => Some(*r),
            })
            .min()
            .map_or(Access::Role(Role::Admin), |least| match least {
                None => Access::Open,
                Some(r) => Access::Role(r),
            })
    }
}

/// `Routes::get(path, access, handler)` and its siblings: one per method,
/// so a route's method and the method its access is recorded for are one
/// token and cannot disagree.
macro_rules! method_fns {
    ($($name:ident => $method:ident),* $(,)?) => {
        $(
            pub fn $name<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
            where
                H: Handler<T, AppState>,
                T: 'static,
            {
                self.add(Method::$method, path, access, routing::$name(handler))
            }
        )*
    };
}

/// The router being declared, and the access of everything declared so far.
pub struct Routes {
    router: Router<AppState>,
    table: AccessTable,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            table: AccessTable::default(),
        }
    }

    method_fns! {
        get => GET,
        post => POST,
        put => PUT,
        delete => DELETE,
    }

    fn add(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<AppState>,
    ) -> Self {
        self.router = self.router.route(path, handler);
        self.table
            .by_path
            .entry(path)
            .or_default()
            .push((method, access));
        self
    }

    /// The router and the table its authorisation layer reads.
    pub fn finish(self) -> (Router<AppState>, AccessTable) {
        (self.router, self.table)
    }
}
