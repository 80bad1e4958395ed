//! A route list that remembers what it serves: each path with the methods it answers, so
//! the OpenAPI document can be checked against the router itself, not a copy of it.

use super::AppState;
use axum::Router;
use axum::handler::Handler;
use axum::routing::{self, MethodRouter};

/// The handlers of one path, with the names of their methods.
pub struct Endpoint {
    router: MethodRouter<AppState>,
    methods: Vec<&'static str>,
}

pub fn get<H: Handler<T, AppState>, T: 'static>(handler: H) -> Endpoint {
    Endpoint { router: routing::get(handler), methods: vec!["get"] }
}

pub fn post<H: Handler<T, AppState>, T: 'static>(handler: H) -> Endpoint {
    Endpoint { router: routing::post(handler), methods: vec!["post"] }
}

pub fn delete<H: Handler<T, AppState>, T: 'static>(handler: H) -> Endpoint {
    Endpoint { router: routing::delete(handler), methods: vec!["delete"] }
}

pub fn put<H: Handler<T, AppState>, T: 'static>(handler: H) -> Endpoint {
    Endpoint { router: routing::put(handler), methods: vec!["put"] }
}

impl Endpoint {
    pub fn post<H: Handler<T, AppState>, T: 'static>(mut self, handler: H) -> Endpoint {
        self.router = self.router.post(handler);
        self.methods.push("post");
        self
    }
}

/// The router being built, and `(method, path)` of everything it serves.
#[derive(Default)]
pub struct Routes {
    pub router: Router<AppState>,
    pub served: Vec<(&'static str, &'static str)>,
}

impl Routes {
    pub fn route(mut self, path: &'static str, endpoint: Endpoint) -> Routes {
        self.served.extend(endpoint.methods.iter().map(|m| (*m, path)));
        self.router = self.router.route(path, endpoint.router);
        self
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every route the daemon serves is in the OpenAPI document with its methods, and the
    /// document names nothing the daemon does not serve.
    #[test]
    fn the_openapi_document_lists_exactly_the_routes_served() {
        let served: BTreeSet<(String, String)> =
            super::super::routes().served.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        let doc: serde_json::Value = serde_json::from_str(super::super::OPENAPI_JSON).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let not_served: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && not_served.is_empty(),
            "served but not in supervisor/src/api/openapi.json: {undocumented:?}; documented but not served: {not_served:?}"
        );
    }

    /// Path parameters are declared for every `{name}` of a path, and only those.
    #[test]
    fn every_path_parameter_is_declared() {
        let doc: serde_json::Value = serde_json::from_str(super::super::OPENAPI_JSON).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let in_path: BTreeSet<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
            for (method, op) in item.as_object().unwrap() {
                let declared: BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                assert_eq!(in_path, declared, "{method} {path}");
                assert!(op["operationId"].is_string() && op["responses"].is_object(), "{method} {path}");
            }
        }
    }
}
