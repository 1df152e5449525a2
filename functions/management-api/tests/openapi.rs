//! The OpenAPI document and the router's table describe the same routes, and the document's
//! references resolve. (The e2e test `api.rs` also calls every documented route on the real
//! binary.)

use std::collections::BTreeSet;

use outlook_core::api::routes::ROUTES;
use serde_yaml::Value;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("openapi.yaml exists"))
        .expect("openapi.yaml is YAML")
}

/// Every `(METHOD, path)` the document describes.
pub fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_mapping().expect("paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().expect("path key").to_owned();
        for (key, _) in item.as_mapping().expect("path item") {
            let key = key.as_str().unwrap_or_default();
            if METHODS.contains(&key) {
                out.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_route_is_routed() {
    let doc = document();
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    let documented = documented(&doc);
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routed but not in openapi.yaml: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "in openapi.yaml but not routed: {unrouted:?}"
    );
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                if k.as_str() == Some("$ref") {
                    out.push(v.as_str().unwrap_or_default().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let doc = document();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference
            .strip_prefix("#/")
            .unwrap_or_else(|| panic!("external reference {reference}"));
        let mut node = &doc;
        for part in pointer.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "{reference} does not resolve");
    }
}

#[test]
fn every_path_parameter_is_declared() {
    let doc = document();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        let path = path.as_str().unwrap();
        let names: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let mut declared = Vec::new();
        let mut params = Vec::new();
        collect_refs(&item["parameters"], &mut params);
        for reference in params {
            let name = reference.rsplit('/').next().unwrap();
            declared.push(
                doc["components"]["parameters"][name]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        for name in names {
            assert!(
                declared.iter().any(|d| d == name),
                "{path}: parameter {name} is not declared"
            );
        }
    }
}
