//! PATCH bodies applied to JSON objects: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and Kubernetes strategic merge patch.

use serde_json::{Map, Value};

/// Applies an RFC 7386 JSON merge patch (`application/merge-patch+json`) in place.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies an RFC 6902 JSON patch (`application/json-patch+json`) in place; on error `target` is left unchanged.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    json_patch::patch(target, &ops.0).map_err(|e| {
        let op = ops
            .0
            .get(e.operation)
            .map(ToString::to_string)
            .unwrap_or_default();
        format!(
            "JSON patch operation {} {op} failed at path {:?}: {}",
            e.operation,
            e.path.to_string(),
            e.kind
        )
    })
}

/// Applies a Kubernetes strategic merge patch (`application/strategic-merge-patch+json`) for built-in types in place.
///
/// Like a merge patch, except that lists of objects with a known merge key are merged item by item,
/// `finalizers` is merged as a set, and the `$patch`, `$deleteFromPrimitiveList/…`, `$retainKeys`
/// and `$setElementOrder/…` directives are honoured or dropped.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    merge_value(target, patch, "");
}

const PATCH_DIRECTIVE: &str = "$patch";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// `field` is the key `patch` sits under, which picks the list merge strategy.
fn merge_value(target: &mut Value, patch: &Value, field: &str) {
    match patch {
        Value::Object(p) => merge_map(target, p),
        Value::Array(items) => merge_list(target, items, field),
        _ => *target = patch.clone(),
    }
}

/// Merges into `Value::Null`, which strips directives and nulls from a value that has no counterpart in the target.
fn normalized(patch: &Value, field: &str) -> Value {
    let mut out = Value::Null;
    merge_value(&mut out, patch, field);
    out
}

fn directive(item: &Value) -> Option<&str> {
    item.get(PATCH_DIRECTIVE).and_then(Value::as_str)
}

fn merge_map(target: &mut Value, patch: &Map<String, Value>) {
    match patch.get(PATCH_DIRECTIVE).and_then(Value::as_str) {
        // Kubernetes turns a map carrying `$patch: delete` into an empty map.
        Some("delete") => {
            *target = Value::Object(Map::new());
            return;
        }
        Some("replace") => *target = Value::Object(Map::new()),
        _ if !target.is_object() => *target = Value::Object(Map::new()),
        _ => {}
    }
    let Value::Object(t) = target else {
        return;
    };
    let mut deletions = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((field, value));
        } else if key == PATCH_DIRECTIVE
            || key == "$retainKeys"
            || key.starts_with("$setElementOrder/")
        {
            // Ordering and retention hints don't change what the object contains here.
        } else if value.is_null() {
            t.remove(key);
        } else {
            merge_value(t.entry(key.clone()).or_insert(Value::Null), value, key);
        }
    }
    // Applied after the merges so the outcome doesn't depend on key order.
    for (field, remove) in deletions {
        if let (Some(Value::Array(list)), Value::Array(remove)) = (t.get_mut(field), remove) {
            list.retain(|v| !remove.contains(v));
        }
    }
}

/// Candidate merge keys per list field; `ports` is `containerPort` in containers, `port` in Services.
fn merge_key_candidates(field: &str) -> &'static [&'static str] {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => &["name"],
        "volumeMounts" => &["mountPath"],
        "ports" => &["containerPort", "port"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        _ => &[],
    }
}

fn merge_list(target: &mut Value, patch: &[Value], field: &str) {
    let mut list = match target.take() {
        Value::Array(list) => list,
        _ => Vec::new(),
    };
    let replace_marker = patch
        .iter()
        .position(|item| directive(item) == Some("replace"));
    let merge_key = merge_key_candidates(field).iter().find(|key| {
        patch
            .iter()
            .all(|item| item.get(**key).is_some_and(|k| !k.is_null()))
    });
    if let Some(marker) = replace_marker {
        // `{"$patch": "replace"}` as a list item replaces the list with the other items.
        list = patch
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != marker)
            .map(|(_, item)| normalized(item, field))
            .collect();
    } else if field == "finalizers" {
        for item in patch {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
    } else if let Some(key) = merge_key {
        for item in patch {
            let id = item.get(*key);
            let existing = list.iter().position(|o| o.get(*key) == id);
            match (directive(item), existing) {
                (Some("delete"), _) => list.retain(|o| o.get(*key) != id),
                (_, Some(i)) => merge_value(&mut list[i], item, field),
                (_, None) => list.push(normalized(item, field)),
            }
        }
    } else {
        list = patch
            .iter()
            .filter(|item| directive(item) != Some("delete"))
            .map(|item| normalized(item, field))
            .collect();
    }
    *target = Value::Array(list);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(mut target: Value, patch: Value) -> Value {
        strategic_merge(&mut target, &patch);
        target
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null, "n": {"x": null, "y": 1}}, "l": [3]}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e", "n": {"y": 1}}, "l": [3]})
        );
        merge_patch(&mut doc, &json!("scalar"));
        assert_eq!(doc, json!("scalar"));
    }

    #[test]
    fn json_patch_applies_operations() {
        let mut doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}});
        json_patch(
            &mut doc,
            &json!([
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "remove", "path": "/metadata/labels/a"},
                {"op": "replace", "path": "/spec/list/0", "value": 9},
                {"op": "add", "path": "/spec/list/-", "value": 3},
                {"op": "copy", "from": "/metadata/labels", "path": "/spec/copied"},
                {"op": "move", "from": "/spec/copied", "path": "/moved"},
                {"op": "test", "path": "/moved/b", "value": "2"}
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"list": [9, 2, 3]}, "moved": {"b": "2"}})
        );
    }

    #[test]
    fn json_patch_failure_names_the_operation_and_rolls_back() {
        let original = json!({"a": 1});
        let mut doc = original.clone();
        let err = json_patch(
            &mut doc,
            &json!([
                {"op": "replace", "path": "/a", "value": 2},
                {"op": "remove", "path": "/missing"}
            ]),
        )
        .unwrap_err();
        assert!(err.contains("operation 1"), "{err}");
        assert!(err.contains("remove"), "{err}");
        assert!(err.contains("/missing"), "{err}");
        assert_eq!(doc, original);

        let err =
            json_patch(&mut doc, &json!([{"op": "test", "path": "/a", "value": 5}])).unwrap_err();
        assert!(err.contains("operation 0") && err.contains("test"), "{err}");
    }

    #[test]
    fn json_patch_rejects_malformed_bodies() {
        let mut doc = json!({});
        for bad in [
            json!({"op": "add"}),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "/a"}]),
            json!([{"op": "add", "path": "no-slash", "value": 1}]),
        ] {
            let err = json_patch(&mut doc, &bad).unwrap_err();
            assert!(err.starts_with("invalid JSON patch"), "{err}");
        }
        assert_eq!(doc, json!({}));
    }

    #[test]
    fn strategic_merge_acts_like_merge_patch_for_maps_and_scalars() {
        assert_eq!(
            smp(
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}}),
                json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"replicas": 3}})
            ),
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"replicas": 3}})
        );
        assert_eq!(
            smp(json!({"a": 1}), json!({"a": {"b": null, "c": 2}})),
            json!({"a": {"c": 2}})
        );
        assert_eq!(
            smp(json!({"a": {"b": 1}}), json!({"a": 5})),
            json!({"a": 5})
        );
        assert_eq!(smp(json!({"a": 1}), json!("x")), json!("x"));
    }

    #[test]
    fn lists_without_merge_key_are_replaced() {
        assert_eq!(
            smp(
                json!({"spec": {"args": ["a", "b"]}}),
                json!({"spec": {"args": ["c"]}})
            ),
            json!({"spec": {"args": ["c"]}})
        );
        assert_eq!(
            smp(
                json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}),
                json!({"spec": {"containers": [{"image": "y"}]}})
            ),
            json!({"spec": {"containers": [{"image": "y"}]}})
        );
        assert_eq!(
            smp(
                json!({"spec": {"tolerations": [{"key": "a"}]}}),
                json!({"spec": {"tolerations": [{"key": "b"}]}})
            ),
            json!({"spec": {"tolerations": [{"key": "b"}]}})
        );
    }

    #[test]
    fn containers_merge_by_name() {
        let pod = json!({"spec": {"containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "side:1"}
        ]}});
        let patched = smp(
            pod,
            json!({"spec": {"containers": [
                {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]},
                {"name": "new", "image": "new:1", "tty": null}
            ]}}),
        );
        assert_eq!(
            patched,
            json!({"spec": {"containers": [
                {"name": "app", "image": "app:2", "env": [
                    {"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}
                ]},
                {"name": "sidecar", "image": "side:1"},
                {"name": "new", "image": "new:1"}
            ]}})
        );
    }

    #[test]
    fn other_merge_keys() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "i", "image": "1"}],
            "ephemeralContainers": [{"name": "e", "image": "1"}],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "imagePullSecrets": [{"name": "s"}],
            "containers": [{"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/a"}], "ports": [{"containerPort": 80, "name": "http"}]}]
        }});
        let patched = smp(
            pod,
            json!({"spec": {
                "initContainers": [{"name": "i", "image": "2"}],
                "ephemeralContainers": [{"name": "e2", "image": "1"}],
                "volumes": [{"name": "token", "projected": {"sources": []}}],
                "imagePullSecrets": [{"name": "t"}],
                "containers": [{"name": "c",
                    "volumeMounts": [{"name": "token", "mountPath": "/a", "readOnly": true}, {"name": "w", "mountPath": "/b"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}]}]
            }}),
        );
        assert_eq!(
            patched,
            json!({"spec": {
                "initContainers": [{"name": "i", "image": "2"}],
                "ephemeralContainers": [{"name": "e", "image": "1"}, {"name": "e2", "image": "1"}],
                "volumes": [{"name": "v", "emptyDir": {}}, {"name": "token", "projected": {"sources": []}}],
                "imagePullSecrets": [{"name": "s"}, {"name": "t"}],
                "containers": [{"name": "c",
                    "volumeMounts": [{"name": "token", "mountPath": "/a", "readOnly": true}, {"name": "w", "mountPath": "/b"}],
                    "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}]}]
            }})
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        assert_eq!(
            smp(
                json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}})
            ),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}})
        );
    }

    #[test]
    fn conditions_merge_by_type() {
        let status = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "Starting"},
            {"type": "Scheduled", "status": "True"}
        ]}});
        assert_eq!(
            smp(
                status,
                json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": null}]}})
            ),
            json!({"status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Scheduled", "status": "True"}
            ]}})
        );
    }

    #[test]
    fn owner_references_merge_by_uid() {
        assert_eq!(
            smp(
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}, {"uid": "1", "controller": true}]}})
            ),
            json!({"metadata": {"ownerReferences": [
                {"uid": "1", "name": "a", "controller": true},
                {"uid": "2", "name": "b"}
            ]}})
        );
    }

    #[test]
    fn finalizers_are_a_set() {
        assert_eq!(
            smp(
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["c", "a", "c"]}})
            ),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}})
        );
        assert_eq!(
            smp(
                json!({"metadata": {}}),
                json!({"metadata": {"finalizers": ["x"]}})
            ),
            json!({"metadata": {"finalizers": ["x"]}})
        );
        assert_eq!(
            smp(
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": null}})
            ),
            json!({"metadata": {}})
        );
    }

    #[test]
    fn delete_from_primitive_list() {
        assert_eq!(
            smp(
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {
                    "$deleteFromPrimitiveList/finalizers": ["b"],
                    "$setElementOrder/finalizers": ["a", "c"]
                }})
            ),
            json!({"metadata": {"finalizers": ["a", "c"]}})
        );
        assert_eq!(
            smp(
                json!({"a": 1}),
                json!({"$deleteFromPrimitiveList/missing": ["x"]})
            ),
            json!({"a": 1})
        );
    }

    #[test]
    fn patch_delete_removes_list_item() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "b", "image": "2"}
        ]}});
        assert_eq!(
            smp(
                pod,
                json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}, {"name": "zz", "$patch": "delete"}]}})
            ),
            json!({"spec": {"containers": [{"name": "b", "image": "2"}]}})
        );
        assert_eq!(
            smp(
                json!({}),
                json!({"spec": {"volumes": [{"name": "a", "$patch": "delete"}]}})
            ),
            json!({"spec": {"volumes": []}})
        );
    }

    #[test]
    fn patch_replace_on_a_map() {
        assert_eq!(
            smp(
                json!({"spec": {"selector": {"a": "1", "b": "2"}, "keep": true}}),
                json!({"spec": {"selector": {"$patch": "replace", "c": "3", "d": null}}})
            ),
            json!({"spec": {"selector": {"c": "3"}, "keep": true}})
        );
    }

    #[test]
    fn patch_delete_on_a_map_empties_it() {
        assert_eq!(
            smp(
                json!({"spec": {"m": {"a": 1}}}),
                json!({"spec": {"m": {"$patch": "delete"}}})
            ),
            json!({"spec": {"m": {}}})
        );
    }

    #[test]
    fn patch_replace_list_item_replaces_the_list() {
        assert_eq!(
            smp(
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "x": null}]}})
            ),
            json!({"spec": {"containers": [{"name": "c"}]}})
        );
    }

    #[test]
    fn directives_are_dropped() {
        assert_eq!(
            smp(
                json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b"}]}}),
                json!({"spec": {
                    "$retainKeys": ["containers"],
                    "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                    "containers": [{"name": "a", "image": "2", "$patch": "merge"}]
                }})
            ),
            json!({"spec": {"containers": [{"name": "a", "image": "2"}, {"name": "b"}]}})
        );
        // A new value with nested directives is stored without them.
        assert_eq!(
            smp(
                json!({}),
                json!({"spec": {"$patch": "replace", "containers": [{"name": "a", "env": [{"name": "X", "$patch": "delete"}]}]}})
            ),
            json!({"spec": {"containers": [{"name": "a", "env": []}]}})
        );
    }

    #[test]
    fn dollar_fields_that_are_not_directives_survive() {
        assert_eq!(
            smp(
                json!({}),
                json!({"schema": {"$ref": "#/x", "$schema": "s"}})
            ),
            json!({"schema": {"$ref": "#/x", "$schema": "s"}})
        );
    }

    #[test]
    fn type_mismatches_replace() {
        assert_eq!(
            smp(
                json!({"spec": {"containers": "oops"}}),
                json!({"spec": {"containers": [{"name": "a"}]}})
            ),
            json!({"spec": {"containers": [{"name": "a"}]}})
        );
        assert_eq!(
            smp(
                json!({"spec": {"containers": [{"name": "a"}]}}),
                json!({"spec": {"containers": {"name": "a"}}})
            ),
            json!({"spec": {"containers": {"name": "a"}}})
        );
        assert_eq!(smp(json!([1]), json!({"a": 1})), json!({"a": 1}));
        assert_eq!(smp(json!({"a": 1}), json!([1])), json!([1]));
    }

    #[test]
    fn merge_key_lists_tolerate_odd_original_items() {
        assert_eq!(
            smp(
                json!({"spec": {"containers": ["junk", {"image": "no-name"}, {"name": "a"}]}}),
                json!({"spec": {"containers": [{"name": "a", "image": "1"}]}})
            ),
            json!({"spec": {"containers": ["junk", {"image": "no-name"}, {"name": "a", "image": "1"}]}})
        );
    }
}
