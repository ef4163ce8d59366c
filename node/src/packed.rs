//! JSON documents kept in memory for a long time, compressed.
//!
//! Every node keeps the managed live objects of the clusters it watches (the live cache)
//! and the output of every app it renders (the render cache) deflated: only the few
//! documents being worked on are inflated. The leader keeps the `Application` resources it
//! has not ingested yet the same way. The compression is the store's
//! (`flotilla_raft::values`), whose preset dictionary already holds most of an
//! `Application`'s keys.

use serde_json::Value;

/// Compact JSON text, deflated. Equal documents pack to equal bytes, so two packed
/// documents compare without inflating them.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed(Box<[u8]>);

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} bytes)", self.0.len())
    }
}

impl Packed {
    /// Pack a document.
    pub fn of(v: &Value) -> Self {
        // Serializing a `Value` cannot fail.
        Self::of_json(&serde_json::to_vec(v).unwrap_or_default())
    }

    /// Pack a document given as JSON text.
    pub fn of_json(json: &[u8]) -> Self {
        Self(deflate(json).into_boxed_slice())
    }

    /// The document (`None` only if the bytes were not made by [`Packed::of`]).
    pub fn value(&self) -> Option<Value> {
        self.decode()
    }

    /// The document as a `T` (`None` if the bytes were not made by this type, or the
    /// document is not a `T`).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&inflate(&self.0)?).ok()
    }
}

fn deflate(input: &[u8]) -> Vec<u8> {
    flotilla_raft::values::deflate_onto(input, Vec::with_capacity(input.len() / 2 + 64))
        .unwrap_or_default()
}

fn inflate(input: &[u8]) -> Option<Vec<u8>> {
    flotilla_raft::values::inflate(input).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_document_comes_back_as_it_went_in_and_smaller() {
        let v = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "app-0042",
                "namespace": "team-a",
                "labels": {"app.kubernetes.io/instance": "app-0042"},
                "managedFields": [{
                    "manager": "flotilla", "operation": "Apply", "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {
                        "f:app.kubernetes.io/instance": {}}}}
                }]
            },
            "data": {"key": "value-0042"}
        });
        let p = Packed::of(&v);
        assert_eq!(p.value(), Some(v.clone()));
        assert_eq!(inflate(&p.0), Some(v.to_string().into_bytes()));
        assert!(
            p.0.len() < v.to_string().len(),
            "{} bytes packed",
            p.0.len()
        );
        assert_eq!(p, Packed::of(&v.clone()));
        let mut other = v;
        other["data"]["key"] = json!("value-0043");
        assert_ne!(p, Packed::of(&other));
    }

    #[test]
    fn large_documents_of_any_ratio_pack_and_unpack() {
        // Far more repetitive than the buffers guess, and hardly compressible at all.
        let repetitive = json!({"data": "a".repeat(200_000)});
        let noisy: Vec<u64> = (0..20_000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7)
            .collect();
        let noisy = json!({ "data": noisy });
        for v in [repetitive, noisy] {
            let p = Packed::of(&v);
            assert_eq!(p.value().as_ref(), Some(&v));
            assert_eq!(inflate(&p.0).map(|t| t.len()), Some(v.to_string().len()));
        }
    }

    #[test]
    fn bytes_not_made_here_give_no_document() {
        assert_eq!(Packed(Box::from(&b"not deflate"[..])).value(), None);
        let whole = Packed::of(&json!({"a": "b".repeat(1000)}));
        let cut = Packed(Box::from(&whole.0[..whole.0.len() / 2]));
        assert_eq!(cut.value(), None);
        assert_eq!(inflate(&cut.0), None);
    }
}
