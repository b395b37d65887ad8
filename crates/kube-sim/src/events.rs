//! core/v1 and events.k8s.io/v1 Events are two views of the same objects in a real cluster:
//! kube-rs's recorder writes the latter, `kubectl describe` reads the former. Objects are stored
//! in core/v1 form and converted when served through events.k8s.io/v1.

use serde_json::{Map, Value};

/// Field renames between the two APIs: (events.k8s.io/v1, core/v1).
const RENAMES: [(&str, &str); 6] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedCount", "count"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedSource", "source"),
];

fn rename(
    obj: &Value,
    api_version: &str,
    from_to: impl Iterator<Item = (&'static str, &'static str)>,
) -> Value {
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let pairs: Vec<(&str, &str)> = from_to.collect();
    let mut out = Map::new();
    for (k, v) in map {
        let key = pairs
            .iter()
            .find(|(from, _)| from == k)
            .map_or(k.as_str(), |(_, to)| to);
        out.insert(key.to_string(), v.clone());
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    Value::Object(out)
}

/// events.k8s.io/v1 → stored core/v1 form.
pub fn to_core(event: &Value) -> Value {
    let mut core = rename(event, "v1", RENAMES.into_iter());
    if let Some(rc) = core
        .as_object_mut()
        .and_then(|m| m.remove("reportingController"))
    {
        core["reportingComponent"] = rc;
    }
    core
}

/// Stored core/v1 form → events.k8s.io/v1.
pub fn to_events_v1(core: &Value) -> Value {
    let mut event = rename(
        core,
        "events.k8s.io/v1",
        RENAMES.into_iter().map(|(a, b)| (b, a)),
    );
    if let Some(rc) = event
        .as_object_mut()
        .and_then(|m| m.remove("reportingComponent"))
    {
        event["reportingController"] = rc;
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_between_the_two_apis() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "ServiceAccount", "name": "sa"}, "note": "bad", "reason": "R",
            "type": "Warning", "reportingController": "irsa-doctor", "reportingInstance": "i"});
        let core = to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "sa");
        assert_eq!(core["message"], "bad");
        assert_eq!(core["reportingComponent"], "irsa-doctor");
        assert_eq!(to_events_v1(&core), v1);
    }
}
