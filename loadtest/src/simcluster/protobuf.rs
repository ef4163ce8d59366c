//! Request bodies in the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! which kubectl's typed commands (`kubectl create namespace|secret|configmap|…`) send.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` message: its `typeMeta` names
//! the kind and its `raw` field holds the object's own message (the `generated.proto`
//! messages of k8s.io/api). [`decode`] turns the bodies of the kinds in [`SUPPORTED`] into
//! the JSON object the same client would have sent as JSON, so the rest of simcluster only
//! ever sees JSON. Unknown fields are skipped; a malformed body is an error naming the
//! field path and byte offset. Responses stay JSON (kubectl accepts both).

use super::meta::rfc3339;
use super::tls::base64;
use serde_json::{Map, Value};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8; 4] = b"k8s\0";
/// Deepest nesting of messages accepted (the supported kinds need five).
const MAX_DEPTH: usize = 16;

/// The kinds whose protobuf bodies simcluster decodes, as `apiVersion kind`.
pub const SUPPORTED: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
];

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The body lacks the `k8s\0` prefix.
    #[error("the protobuf body does not start with the Kubernetes magic bytes \"k8s\\0\"")]
    NoMagic,
    /// Bytes that are not valid protobuf (truncated, overlong varint, bad tag …).
    #[error("malformed protobuf body at byte {at} (in {path}): {what}")]
    Malformed {
        /// Field path, e.g. `Secret.metadata.labels`.
        path: String,
        /// Offset from the start of the body.
        at: usize,
        /// What is wrong.
        what: String,
    },
    /// A known field arrived with a wire type its type cannot have.
    #[error("malformed protobuf body at byte {at}: field {path} (number {number}) must be {expected}, got wire type {wire}")]
    WireType {
        /// Field path.
        path: String,
        /// Field number.
        number: u32,
        /// Offset of the field's tag from the start of the body.
        at: usize,
        /// The encoding the field needs.
        expected: &'static str,
        /// The wire type found.
        wire: u8,
    },
    /// The envelope names a kind simcluster cannot decode from protobuf.
    #[error("simcluster decodes protobuf bodies only for {}; this body is {kind:?} of {api_version:?}; send it as application/json (with kubectl: `kubectl create … --dry-run=client -o yaml | kubectl apply -f -`)", supported_list())]
    UnsupportedKind {
        /// `apiVersion` from the envelope.
        api_version: String,
        /// `kind` from the envelope.
        kind: String,
    },
    /// The envelope's `contentEncoding` is set (e.g. gzip), which no client sends.
    #[error("the protobuf envelope's contentEncoding {0:?} is not supported")]
    Encoding(String),
}

impl ProtoError {
    /// Whether the error is about the kind (HTTP 415) rather than broken bytes (HTTP 400).
    pub fn is_unsupported_kind(&self) -> bool {
        matches!(self, ProtoError::UnsupportedKind { .. })
    }
}

fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(|(_, k)| *k)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How one field's value is encoded and turned into JSON.
#[derive(Clone, Copy)]
enum Ty {
    /// `string` → JSON string.
    Str,
    /// `bool` (varint) → JSON bool.
    Bool,
    /// `int64` (varint) → JSON number.
    I64,
    /// `meta.v1.Time` message → RFC 3339 string (zero time → absent).
    Time,
    /// `meta.v1.FieldsV1` message whose `Raw` holds JSON → that JSON.
    FieldsV1,
    /// `map<string,string>` → JSON object of strings.
    StrMap,
    /// `map<string,bytes>` → JSON object of base64 strings.
    BytesMap,
    /// A nested message → JSON object.
    Msg(&'static [Field]),
}

impl Ty {
    fn wire(self) -> (u8, &'static str) {
        match self {
            Ty::Bool | Ty::I64 => (0, "a varint (wire type 0)"),
            _ => (2, "length-delimited (wire type 2)"),
        }
    }
}

/// One known field of a message.
#[derive(Clone, Copy)]
struct Field {
    number: u32,
    name: &'static str,
    ty: Ty,
    repeated: bool,
    /// Kept in JSON even when empty/zero (the Go field has no `omitempty`, or is a pointer).
    keep: bool,
}

const fn one(number: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        number,
        name,
        ty,
        repeated: false,
        keep: false,
    }
}

const fn kept(number: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        keep: true,
        ..one(number, name, ty)
    }
}

const fn many(number: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        repeated: true,
        ..one(number, name, ty)
    }
}

const OWNER_REFERENCE: &[Field] = &[
    kept(5, "apiVersion", Ty::Str),
    kept(1, "kind", Ty::Str),
    kept(3, "name", Ty::Str),
    kept(4, "uid", Ty::Str),
    kept(6, "controller", Ty::Bool),
    kept(7, "blockOwnerDeletion", Ty::Bool),
];

const MANAGED_FIELDS_ENTRY: &[Field] = &[
    one(1, "manager", Ty::Str),
    one(2, "operation", Ty::Str),
    one(3, "apiVersion", Ty::Str),
    one(4, "time", Ty::Time),
    one(6, "fieldsType", Ty::Str),
    one(7, "fieldsV1", Ty::FieldsV1),
    one(8, "subresource", Ty::Str),
];

const OBJECT_META: &[Field] = &[
    one(1, "name", Ty::Str),
    one(2, "generateName", Ty::Str),
    one(3, "namespace", Ty::Str),
    one(4, "selfLink", Ty::Str),
    one(5, "uid", Ty::Str),
    one(6, "resourceVersion", Ty::Str),
    one(7, "generation", Ty::I64),
    one(8, "creationTimestamp", Ty::Time),
    one(9, "deletionTimestamp", Ty::Time),
    kept(10, "deletionGracePeriodSeconds", Ty::I64),
    one(11, "labels", Ty::StrMap),
    one(12, "annotations", Ty::StrMap),
    many(13, "ownerReferences", Ty::Msg(OWNER_REFERENCE)),
    many(14, "finalizers", Ty::Str),
    many(17, "managedFields", Ty::Msg(MANAGED_FIELDS_ENTRY)),
];

const META: Field = one(1, "metadata", Ty::Msg(OBJECT_META));

const NAMESPACE_CONDITION: &[Field] = &[
    kept(1, "type", Ty::Str),
    kept(2, "status", Ty::Str),
    one(4, "lastTransitionTime", Ty::Time),
    one(5, "reason", Ty::Str),
    one(6, "message", Ty::Str),
];

const NAMESPACE: &[Field] = &[
    META,
    one(2, "spec", Ty::Msg(&[many(1, "finalizers", Ty::Str)])),
    one(
        3,
        "status",
        Ty::Msg(&[
            one(1, "phase", Ty::Str),
            many(2, "conditions", Ty::Msg(NAMESPACE_CONDITION)),
        ]),
    ),
];

const SECRET: &[Field] = &[
    META,
    one(2, "data", Ty::BytesMap),
    one(3, "type", Ty::Str),
    one(4, "stringData", Ty::StrMap),
    kept(5, "immutable", Ty::Bool),
];

const CONFIG_MAP: &[Field] = &[
    META,
    one(2, "data", Ty::StrMap),
    one(3, "binaryData", Ty::BytesMap),
    kept(4, "immutable", Ty::Bool),
];

const OBJECT_REFERENCE: &[Field] = &[
    one(1, "kind", Ty::Str),
    one(2, "namespace", Ty::Str),
    one(3, "name", Ty::Str),
    one(4, "uid", Ty::Str),
    one(5, "apiVersion", Ty::Str),
    one(6, "resourceVersion", Ty::Str),
    one(7, "fieldPath", Ty::Str),
];

const SERVICE_ACCOUNT: &[Field] = &[
    META,
    many(2, "secrets", Ty::Msg(OBJECT_REFERENCE)),
    many(3, "imagePullSecrets", Ty::Msg(&[one(1, "name", Ty::Str)])),
    kept(4, "automountServiceAccountToken", Ty::Bool),
];

const fn kept_many(number: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        keep: true,
        ..many(number, name, ty)
    }
}

const POLICY_RULE: &[Field] = &[
    kept_many(1, "verbs", Ty::Str),
    many(2, "apiGroups", Ty::Str),
    many(3, "resources", Ty::Str),
    many(4, "resourceNames", Ty::Str),
    many(5, "nonResourceURLs", Ty::Str),
];

const LABEL_SELECTOR: &[Field] = &[
    one(1, "matchLabels", Ty::StrMap),
    many(
        2,
        "matchExpressions",
        Ty::Msg(&[
            kept(1, "key", Ty::Str),
            kept(2, "operator", Ty::Str),
            many(3, "values", Ty::Str),
        ]),
    ),
];

const RULES: Field = kept_many(2, "rules", Ty::Msg(POLICY_RULE));

const ROLE: &[Field] = &[META, RULES];

const CLUSTER_ROLE: &[Field] = &[
    META,
    RULES,
    one(
        3,
        "aggregationRule",
        Ty::Msg(&[many(1, "clusterRoleSelectors", Ty::Msg(LABEL_SELECTOR))]),
    ),
];

const SUBJECT: &[Field] = &[
    kept(1, "kind", Ty::Str),
    one(2, "apiGroup", Ty::Str),
    kept(3, "name", Ty::Str),
    one(4, "namespace", Ty::Str),
];

const ROLE_REF: &[Field] = &[
    kept(1, "apiGroup", Ty::Str),
    kept(2, "kind", Ty::Str),
    kept(3, "name", Ty::Str),
];

const BINDING: &[Field] = &[
    META,
    many(2, "subjects", Ty::Msg(SUBJECT)),
    kept(3, "roleRef", Ty::Msg(ROLE_REF)),
];

const PRECONDITIONS: &[Field] = &[one(1, "uid", Ty::Str), one(2, "resourceVersion", Ty::Str)];

/// `meta.v1.DeleteOptions`, the body of a DELETE (sent as protobuf by Helm's release storage).
const DELETE_OPTIONS: &[Field] = &[
    one(1, "gracePeriodSeconds", Ty::I64),
    one(2, "preconditions", Ty::Msg(PRECONDITIONS)),
    one(3, "orphanDependents", Ty::Bool),
    one(4, "propagationPolicy", Ty::Str),
    many(5, "dryRun", Ty::Str),
];

fn schema(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    Some(match (api_version, kind) {
        (_, "DeleteOptions") => DELETE_OPTIONS,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("rbac.authorization.k8s.io/v1", "Role") => ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => BINDING,
        _ => return None,
    })
}

/// Decodes a whole protobuf request body into the object's JSON, `apiVersion` and `kind`
/// first.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtoError::NoMagic)?;
    let (mut api_version, mut kind, mut raw, mut encoding) =
        (String::new(), String::new(), None, String::new());
    let mut r = Reader::new(rest, MAGIC.len(), "Unknown");
    while let Some((number, at, wire)) = r.field()? {
        match (number, wire) {
            (1, Wire::Bytes(b, off)) => {
                let mut t = Reader::new(b, off, "Unknown.typeMeta");
                while let Some((n, _, w)) = t.field()? {
                    match (n, w) {
                        (1, Wire::Bytes(s, o)) => api_version = utf8(s, o, "typeMeta.apiVersion")?,
                        (2, Wire::Bytes(s, o)) => kind = utf8(s, o, "typeMeta.kind")?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b, off)) => raw = Some((b, off)),
            (3, Wire::Bytes(s, o)) => encoding = utf8(s, o, "Unknown.contentEncoding")?,
            (4, Wire::Bytes(..)) => {} // contentType: the body is protobuf either way
            (1..=4, w) => {
                return Err(ProtoError::WireType {
                    path: "Unknown".into(),
                    number,
                    at,
                    expected: "length-delimited (wire type 2)",
                    wire: w.wire_type(),
                })
            }
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(ProtoError::Encoding(encoding));
    }
    let fields = schema(&api_version, &kind).ok_or_else(|| ProtoError::UnsupportedKind {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let (raw, off) = raw.unwrap_or((&[], body.len()));
    let obj = message(raw, off, fields, &kind, 0)?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version));
    out.insert("kind".into(), Value::String(kind));
    out.extend(obj);
    Ok(Value::Object(out))
}

/// One field's value as read off the wire, with the offset of its bytes.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8], usize),
    /// A fixed64 (wire type 1) or fixed32 (wire type 5) value; no supported field has one.
    Fixed(u8),
}

impl Wire<'_> {
    fn wire_type(&self) -> u8 {
        match self {
            Wire::Varint(_) => 0,
            Wire::Bytes(..) => 2,
            Wire::Fixed(w) => *w,
        }
    }
}

/// Reads fields off one message's bytes; offsets are reported relative to the whole body.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    path: &'a str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize, path: &'a str) -> Self {
        Reader {
            buf,
            pos: 0,
            base,
            path,
        }
    }

    fn malformed(&self, at: usize, what: impl Into<String>) -> ProtoError {
        ProtoError::Malformed {
            path: self.path.to_string(),
            at: self.base + at,
            what: what.into(),
        }
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.malformed(start, "truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.malformed(start, "varint longer than 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.malformed(start, "varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize, at: usize, what: &str) -> Result<&'a [u8], ProtoError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                self.malformed(
                    at,
                    format!(
                        "{what} of {n} bytes runs past the end of its message ({} bytes left)",
                        self.buf.len() - self.pos
                    ),
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field as (number, offset of its tag in the body, value); `None` at the end.
    fn field(&mut self) -> Result<Option<(u32, usize, Wire<'a>)>, ProtoError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let at = self.pos;
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3)
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| self.malformed(at, format!("invalid field number {}", tag >> 3)))?;
        let wire = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8, at, "a fixed64 value")?;
                Wire::Fixed(1)
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                let off = self.base + self.pos;
                Wire::Bytes(self.take(len, at, "a length-delimited field")?, off)
            }
            5 => {
                self.take(4, at, "a fixed32 value")?;
                Wire::Fixed(5)
            }
            w => {
                return Err(self.malformed(
                    at,
                    format!("field {number} has unsupported wire type {w} (groups are not used by Kubernetes)"),
                ))
            }
        };
        Ok(Some((number, self.base + at, wire)))
    }
}

fn utf8(bytes: &[u8], at: usize, path: &str) -> Result<String, ProtoError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| ProtoError::Malformed {
        path: path.to_string(),
        at: at + e.utf8_error().valid_up_to(),
        what: "string is not valid UTF-8".into(),
    })
}

/// Decodes one message with its schema into a JSON object.
fn message(
    buf: &[u8],
    base: usize,
    fields: &[Field],
    path: &str,
    depth: usize,
) -> Result<Map<String, Value>, ProtoError> {
    let mut r = Reader::new(buf, base, path);
    if depth > MAX_DEPTH {
        return Err(r.malformed(0, "messages nested too deeply"));
    }
    let mut out = Map::new();
    while let Some((number, at, wire)) = r.field()? {
        let Some(f) = fields.iter().find(|f| f.number == number) else {
            continue; // unknown field: skipped, as protobuf readers do
        };
        let fpath = format!("{path}.{}", f.name);
        let (want, expected) = f.ty.wire();
        if wire.wire_type() != want {
            return Err(ProtoError::WireType {
                path: fpath,
                number,
                at,
                expected,
                wire: wire.wire_type(),
            });
        }
        match (f.ty, wire) {
            (Ty::StrMap | Ty::BytesMap, Wire::Bytes(b, off)) => {
                let (k, v) = map_entry(b, off, &fpath, matches!(f.ty, Ty::BytesMap))?;
                let m = out
                    .entry(f.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = m {
                    m.insert(k, v);
                }
            }
            (ty, wire) => {
                let v = scalar(ty, wire, &fpath, depth)?;
                if f.repeated {
                    let list = out.entry(f.name).or_insert_with(|| Value::Array(vec![]));
                    if let Value::Array(a) = list {
                        a.push(v);
                    }
                } else {
                    out.insert(f.name.into(), v); // the last occurrence wins
                }
            }
        }
    }
    for f in fields {
        let empty = match out.get(f.name) {
            None => {
                if f.keep && f.repeated {
                    out.insert(f.name.into(), Value::Array(vec![]));
                }
                continue;
            }
            Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(_) => false,
        };
        if empty && !f.keep {
            out.remove(f.name);
        }
    }
    Ok(out)
}

/// One non-map value.
fn scalar(ty: Ty, wire: Wire<'_>, path: &str, depth: usize) -> Result<Value, ProtoError> {
    Ok(match (ty, wire) {
        (Ty::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        (Ty::I64, Wire::Varint(v)) => Value::from(v as i64),
        (Ty::Str, Wire::Bytes(b, off)) => Value::String(utf8(b, off, path)?),
        (Ty::Time, Wire::Bytes(b, off)) => time(b, off, path)?,
        (Ty::FieldsV1, Wire::Bytes(b, off)) => {
            let mut r = Reader::new(b, off, path);
            let mut v = Value::Object(Map::new());
            while let Some((n, at, w)) = r.field()? {
                if let (1, Wire::Bytes(raw, _)) = (n, w) {
                    v = serde_json::from_slice(raw).map_err(|e| ProtoError::Malformed {
                        path: path.to_string(),
                        at,
                        what: format!("FieldsV1 is not JSON: {e}"),
                    })?;
                }
            }
            v
        }
        (Ty::Msg(fields), Wire::Bytes(b, off)) => {
            Value::Object(message(b, off, fields, path, depth + 1)?)
        }
        // `message` checked the wire type against the field's type.
        _ => Value::Null,
    })
}

/// A `meta.v1.Time` (seconds since the epoch; nanoseconds are not serialised) as RFC 3339.
fn time(buf: &[u8], base: usize, path: &str) -> Result<Value, ProtoError> {
    let mut r = Reader::new(buf, base, path);
    let mut seconds = 0i64;
    while let Some((n, _, w)) = r.field()? {
        if let (1, Wire::Varint(v)) = (n, w) {
            seconds = v as i64;
        }
    }
    match u64::try_from(seconds) {
        Ok(0) => Ok(Value::Null),
        Ok(s) => Ok(Value::String(rfc3339(s))),
        Err(_) => Err(r.malformed(0, format!("time {seconds} s is before 1970"))),
    }
}

/// One entry of a `map<string, string|bytes>` (an embedded message: key 1, value 2).
fn map_entry(
    buf: &[u8],
    base: usize,
    path: &str,
    bytes: bool,
) -> Result<(String, Value), ProtoError> {
    let mut r = Reader::new(buf, base, path);
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    while let Some((n, at, w)) = r.field()? {
        match (n, w) {
            (1, Wire::Bytes(b, off)) => key = utf8(b, off, path)?,
            (2, Wire::Bytes(b, _)) if bytes => value = Value::String(base64(b)),
            (2, Wire::Bytes(b, off)) => value = Value::String(utf8(b, off, path)?),
            (1 | 2, w) => {
                return Err(ProtoError::WireType {
                    path: format!("{path}[{}]", if n == 1 { "key" } else { "value" }),
                    number: n,
                    at,
                    expected: "length-delimited (wire type 2)",
                    wire: w.wire_type(),
                })
            }
            _ => {}
        }
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests;
