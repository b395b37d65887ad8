//! `meta.k8s.io/v1` Tables, which `kubectl get` asks for to print columns.

use serde_json::{json, Value};

use crate::jsonpath;
use crate::resources::ResourceType;

/// Whether an Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// kubectl's short human durations: `45s`, `3m12s`, `95m`, `5h`, `3d`.
pub fn human_age(created: &str) -> String {
    let Ok(ts) = created.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - ts.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

struct Column {
    name: String,
    type_: String,
    priority: i64,
    description: String,
    cell: Box<dyn Fn(&Value) -> Value>,
}

fn column(name: &str, type_: &str, cell: impl Fn(&Value) -> Value + 'static) -> Column {
    Column {
        name: name.into(),
        type_: type_.into(),
        priority: 0,
        description: String::new(),
        cell: Box::new(cell),
    }
}

fn age(obj: &Value) -> Value {
    json!(human_age(
        obj["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or_default()
    ))
}

fn render(value: Option<Value>, type_: &str) -> Value {
    match value {
        None | Some(Value::Null) => json!("<none>"),
        Some(Value::String(s)) if type_ == "date" => json!(human_age(&s)),
        Some(Value::Array(items)) => json!(items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(",")),
        Some(v) => v,
    }
}

fn columns(rt: &ResourceType) -> Vec<Column> {
    let mut cols = vec![column("Name", "string", |o| o["metadata"]["name"].clone())];
    if !rt.printer_columns.is_empty() {
        for pc in &rt.printer_columns {
            let (path, type_) = (pc.json_path.clone(), pc.type_.clone());
            let mut c = column(&pc.name, &pc.type_, move |o| {
                render(jsonpath::eval(&path, o), &type_)
            });
            c.priority = pc.priority;
            c.description = pc.description.clone();
            cols.push(c);
        }
        return cols;
    }
    if rt.group.is_empty() && rt.plural == "pods" {
        cols.push(column("Ready", "string", |o| {
            let statuses = o["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|s| s["ready"] == json!(true))
                .count();
            json!(format!("{ready}/{total}"))
        }));
        cols.push(column("Status", "string", |o| {
            let waiting = o["status"]["containerStatuses"].as_array().and_then(|s| {
                s.iter()
                    .find_map(|c| c["state"]["waiting"]["reason"].as_str().map(str::to_string))
            });
            json!(waiting.unwrap_or_else(|| o["status"]["phase"]
                .as_str()
                .unwrap_or("Pending")
                .to_string()))
        }));
        cols.push(column("Restarts", "integer", |_| json!(0)));
    }
    cols.push(column("Age", "string", age));
    cols
}

/// A Table of `objects`; rows carry the object (`includeObject=Object`) or its metadata.
pub fn table(rt: &ResourceType, objects: &[Value], include_object: &str, rv: &str) -> Value {
    let cols = columns(rt);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
            };
            json!({"cells": cols.iter().map(|c| (c.cell)(o)).collect::<Vec<_>>(), "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": cols.iter().map(|c| json!({
            "name": c.name, "type": c.type_, "format": if c.name == "Name" { "name" } else { "" },
            "description": c.description, "priority": c.priority,
        })).collect::<Vec<_>>(),
        "rows": rows,
    })
}
