//! How records and log entries sit in sled: one tag byte, then their bincode bytes, deflated
//! when they are large.
//!
//! Statuses and batched log entries are JSON-heavy and repeat themselves (a status names its
//! source and revision several times), so deflating them shrinks the state and the log by
//! several times, on disk and in sled's page cache. Small values (a single 256-byte write, the
//! vote, a revision) are kept as they are: deflating them would cost more than it saves.
//!
//! Only the `state` records and the `raft_log` entries are packed; sled keys, the state
//! machine's `\0meta/` keys and the `raft_meta` tree stay plain bincode. A data directory written
//! before values were packed is converted once, when it is opened ([`upgrade`]).
//!
//! [`deflate_onto`] and [`inflate`] are public: the node crate packs the documents it keeps
//! in memory with them. One compressor and one decompressor per thread are reused: setting
//! one up costs far more than packing a small value.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use sled::Transactional;

use crate::apply::keys;

/// The value follows as it is.
const PLAIN: u8 = 0;
/// The value follows deflated (raw deflate, no header), without a dictionary. Read, no
/// longer written.
const DEFLATED: u8 = 1;
/// The value follows deflated with [`DICTIONARY`] preset. What this code writes.
const DEFLATED_DICT: u8 = 2;

/// A preset dictionary of what applications, statuses and operations are made of: their
/// field names and common values, as JSON. Records of a few hundred bytes repeat little
/// within themselves, but nearly all of their keys are here, so they deflate to a fraction
/// instead of barely shrinking. Deflate finds the nearest copy first, so the most common
/// strings come last.
///
/// Part of the stored format: values tagged [`DEFLATED_DICT`] are read with exactly these
/// bytes. A different dictionary needs a new tag.
const DICTIONARY: &str = concat!(
    r#"{"kind":"Deployment","apiVersion":"apps/v1"}{"kind":"Service"}{"kind":"Secret"}"#,
    r#"{"kind":"StatefulSet"}{"kind":"Ingress","group":"networking.k8s.io"}"#,
    r#""helm":{"valueFiles":["values.yaml"],"releaseName":"","parameters":[{"name":"","value":""}]}"#,
    r#""kustomize":{"images":[]},"directory":{"recurse":true,"jsonnet":{}},"chart":"","#,
    r#""ignoreDifferences":[{"group":"","kind":"","jsonPointers":["/spec/replicas"]}],"#,
    r#""retry":{"limit":5,"backoff":{"duration":"5s","factor":2,"maxDuration":"3m"}},"#,
    r#""syncOptions":["ServerSideApply=true","PruneLast=true","ApplyOutOfSyncOnly=true"],"#,
    r#""conditions":[{"type":"ComparisonError","message":""},{"type":"SyncError"}],"#,
    r#""phase":"Running","phase":"Failed","phase":"Error","status":"OutOfSync","#,
    r#""status":"Missing","status":"Progressing","status":"Degraded","status":"Unknown","#,
    r#""sourceType":"Helm","sourceType":"Kustomize","sourceType":"Directory","summary":{},"#,
    r#"{"apiVersion":"argoproj.io/v1alpha1","kind":"Application","metadata":{"annotations":"#,
    r#"{"argocd.argoproj.io/sync-wave":"0","argocd.argoproj.io/manifest-generate-paths":".","#,
    r#""flotilla.dev/origin":"kubernetes"},"labels":{"app.kubernetes.io/instance":""},"#,
    r#""finalizers":["resources-finalizer.argocd.argoproj.io"],"name":"","namespace":"argocd","#,
    r#""uid":""},"spec":{"destination":{"name":"","namespace":"","#,
    r#""server":"https://kubernetes.default.svc"},"project":"default","source":{"path":"","#,
    r#""repoURL":"https://github.com/","targetRevision":"HEAD"},"targetRevision":"main"},"#,
    r#""syncPolicy":{"automated":{"prune":true,"selfHeal":true},"#,
    r#""syncOptions":["CreateNamespace=true"]}}}"#,
    r#"{"initiatedBy":"automated","prune":true,"dryRun":false}"#,
    r#"{"phase":"Succeeded","message":"successfully synced (all tasks run)","resources":"#,
    r#"[{"group":"","kind":"ConfigMap","namespace":"","name":"","status":"Synced","#,
    r#""syncPhase":"Sync","message":"server-side applied"}],"startedAt":"","finishedAt":"","#,
    r#""revision":"","attempts":1,"dryRun":false}"#,
    r#"{"sync":{"status":"Synced","revision":""},"health":{"status":"Healthy"},"resources":"#,
    r#"[{"group":"","version":"v1","kind":"ConfigMap","namespace":"","name":"","#,
    r#""status":"Synced"}],"operationState":{"opId":"","phase":"Succeeded","#,
    r#""message":"successfully synced (all tasks run)","revision":"","startedAt":"","#,
    r#""finishedAt":"","retryCount":0},"history":[{"id":0,"revision":"","deployedAt":"","#,
    r#""deployStartedAt":"","source":{"repoURL":"","path":"","targetRevision":""},"#,
    r#""opId":""}],"reconciledAt":"","observedGeneration":1}"#,
);

/// Values from this size on are deflated.
const DEFLATE_FROM: usize = 512;

/// Where the layout marker lives, and its key.
const MARKER_TREE: &str = "raft_meta";
const MARKER_KEY: &[u8] = b"value_layout";
/// The layout this code writes: tagged values.
const LAYOUT: &[u8] = b"tagged-1";

thread_local! {
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// The stored form of `value`'s bincode bytes.
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> bincode::Result<Vec<u8>> {
    let mut plain = vec![PLAIN];
    bincode::serialize_into(&mut plain, value)?;
    Ok(shrink(plain))
}

/// The stored form of `bytes`.
pub(crate) fn pack(bytes: Vec<u8>) -> Vec<u8> {
    let mut plain = Vec::with_capacity(bytes.len() + 1);
    plain.push(PLAIN);
    plain.extend_from_slice(&bytes);
    shrink(plain)
}

/// `plain` (the tag, then the bytes), deflated instead when it is large and deflating makes
/// it shorter.
fn shrink(plain: Vec<u8>) -> Vec<u8> {
    if plain.len() > DEFLATE_FROM {
        let deflated = deflate_onto(&plain[1..], tagged(plain.len()));
        if let Some(packed) = deflated.filter(|p| p.len() < plain.len()) {
            return packed;
        }
    }
    plain
}

/// A stored value decoded; an error says what was wrong with it.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(stored: &[u8]) -> Result<T, String> {
    let bytes = unpack(stored)?;
    bincode::deserialize(&bytes).map_err(|e| e.to_string())
}

/// The bincode bytes of a stored value.
pub(crate) fn unpack(stored: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    match stored.split_first() {
        Some((&PLAIN, rest)) => Ok(Cow::Borrowed(rest)),
        Some((&DEFLATED_DICT, rest)) => inflate(rest).map(Cow::Owned),
        Some((&DEFLATED, rest)) => inflate_with(rest, None).map(Cow::Owned),
        Some((tag, _)) => Err(format!("unknown value tag {tag}")),
        None => Err("empty value".into()),
    }
}

/// An empty deflated value, with room for deflating `len` bytes.
fn tagged(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len / 3 + 64);
    out.push(DEFLATED_DICT);
    out
}

/// `out`, then `input` deflated with the preset dictionary (raw deflate, no header). `None`
/// only if the compressor failed, which it does not do when writing into a growing `Vec`.
pub fn deflate_onto(input: &[u8], mut out: Vec<u8>) -> Option<Vec<u8>> {
    DEFLATE.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        c.set_dictionary(DICTIONARY.as_bytes()).ok()?;
        loop {
            let read = c.total_in() as usize;
            match c.compress_vec(&input[read..], &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => return Some(out),
                Ok(_) => out.reserve(out.capacity().max(64)),
                Err(_) => return None,
            }
        }
    })
}

/// What [`deflate_onto`] made, inflated; an error says why it could not be.
pub fn inflate(input: &[u8]) -> Result<Vec<u8>, String> {
    inflate_with(input, Some(DICTIONARY.as_bytes()))
}

fn inflate_with(input: &[u8], dictionary: Option<&[u8]>) -> Result<Vec<u8>, String> {
    INFLATE.with(|d| {
        let mut d = d.borrow_mut();
        d.reset(false);
        if let Some(dict) = dictionary {
            d.set_dictionary(dict)
                .map_err(|e| format!("deflated value: {e}"))?;
        }
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            let read = d.total_in() as usize;
            let before = d.total_out();
            match d.decompress_vec(&input[read..], &mut out, FlushDecompress::None) {
                Ok(Status::StreamEnd) => return Ok(out),
                // All input taken, room left and nothing more came out: the stream is cut.
                Ok(_)
                    if d.total_in() as usize == input.len()
                        && d.total_out() == before
                        && out.len() < out.capacity() =>
                {
                    return Err("deflated value cut short".into())
                }
                Ok(_) => out.reserve(out.capacity().max(64)),
                Err(e) => return Err(format!("deflated value: {e}")),
            }
        }
    })
}

/// Bring `db` to the tagged layout: a new database is marked; one written before values were
/// tagged has every record and log entry rewritten, together with the marker, in one
/// transaction. Cheap once done.
pub(crate) fn upgrade(db: &sled::Db) -> io::Result<()> {
    let marker = db.open_tree(MARKER_TREE).map_err(io::Error::other)?;
    match marker.get(MARKER_KEY).map_err(io::Error::other)? {
        Some(v) if v.as_ref() == LAYOUT => return Ok(()),
        Some(v) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the data directory's value layout is {:?}, which this version does not read",
                    String::from_utf8_lossy(&v)
                ),
            ))
        }
        None => {}
    }
    let state = db.open_tree("state").map_err(io::Error::other)?;
    let log = db.open_tree("raft_log").map_err(io::Error::other)?;
    let meta = keys::META.as_bytes();
    let mut records = Vec::new();
    for item in state.iter() {
        let (k, v) = item.map_err(io::Error::other)?;
        if !k.starts_with(meta) {
            records.push((k, pack(v.to_vec())));
        }
    }
    let mut entries = Vec::new();
    for item in log.iter() {
        let (k, v) = item.map_err(io::Error::other)?;
        entries.push((k, pack(v.to_vec())));
    }
    let converted = records.len() + entries.len();
    (&state, &log, &marker)
        .transaction(|(s, l, m)| {
            for (k, v) in &records {
                s.insert(k, v.as_slice())?;
            }
            for (k, v) in &entries {
                l.insert(k, v.as_slice())?;
            }
            m.insert(MARKER_KEY, LAYOUT)?;
            Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
        })
        .map_err(|e| io::Error::other(format!("converting stored values: {e:?}")))?;
    db.flush().map_err(io::Error::other)?;
    if converted > 0 {
        tracing::info!(converted, "converted stored values to the tagged layout");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_stay_plain_and_large_ones_shrink() {
        let small = vec![7u8; 100];
        let packed = pack(small.clone());
        assert_eq!(packed[0], PLAIN);
        assert_eq!(unpack(&packed).unwrap().as_ref(), small.as_slice());

        let status = br#"{"sync":{"status":"Synced","revision":"0123456789abcdef0123456789abcdef01234567"},"source":{"repoURL":"http://git.example/repo.git","path":"apps/a"}}"#.repeat(8);
        let packed = pack(status.clone());
        assert_eq!(packed[0], DEFLATED_DICT);
        assert!(
            packed.len() * 3 < status.len(),
            "{} of {}",
            packed.len(),
            status.len()
        );
        assert_eq!(unpack(&packed).unwrap().as_ref(), status.as_slice());
    }

    #[test]
    fn encoding_a_value_matches_packing_its_bytes() {
        let small = ("app/ns/a".to_string(), 7u64);
        let big = ("status".repeat(200), 9u64);
        for bytes in [
            bincode::serialize(&small).unwrap(),
            bincode::serialize(&big).unwrap(),
        ] {
            let packed = pack(bytes.clone());
            assert_eq!(unpack(&packed).unwrap().as_ref(), bytes.as_slice());
        }
        assert_eq!(
            encode(&small).unwrap(),
            pack(bincode::serialize(&small).unwrap())
        );
        assert_eq!(
            encode(&big).unwrap(),
            pack(bincode::serialize(&big).unwrap())
        );
    }

    #[test]
    fn an_application_status_of_a_few_hundred_bytes_shrinks_to_a_fraction() {
        let status = br#"{"sync":{"status":"Synced","revision":"9c3a1e0f5b7d2c4e6a8b0d1f3e5c7a9b1d3f5e7c"},"health":{"status":"Healthy"},"resources":[{"group":"","version":"v1","kind":"ConfigMap","namespace":"web","name":"web-settings","status":"Synced"}],"operationState":{"opId":"2-9c3a1e0-1796683503885-7","phase":"Succeeded","message":"successfully synced (all tasks run)","revision":"9c3a1e0f5b7d2c4e6a8b0d1f3e5c7a9b1d3f5e7c","startedAt":"2026-11-02T10:15:03.885Z","finishedAt":"2026-11-02T10:15:04.047Z","retryCount":0},"reconciledAt":"2026-11-02T10:16:04.131Z","observedGeneration":3}"#;
        let packed = pack(status.to_vec());
        assert_eq!(packed[0], DEFLATED_DICT);
        assert!(
            packed.len() * 5 < status.len() * 2,
            "{} of {} bytes",
            packed.len(),
            status.len()
        );
        assert_eq!(unpack(&packed).unwrap().as_ref(), status.as_slice());
    }

    #[test]
    fn values_deflated_without_the_dictionary_are_still_read() {
        let value = b"an earlier layout ".repeat(64);
        let mut c = Compress::new(Compression::fast(), false);
        let mut out = vec![DEFLATED];
        out.reserve(value.len());
        let status = c
            .compress_vec(&value, &mut out, FlushCompress::Finish)
            .unwrap();
        assert_eq!(status, Status::StreamEnd);
        assert_eq!(unpack(&out).unwrap().as_ref(), value.as_slice());
    }

    #[test]
    fn an_empty_buffer_grows() {
        let value = b"grows from nothing ".repeat(100);
        let deflated = deflate_onto(&value, Vec::new()).unwrap();
        assert_eq!(inflate(&deflated).unwrap(), value);
    }

    #[test]
    fn large_values_that_do_not_shrink_stay_plain() {
        // A xorshift stream: deflate cannot shrink it.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let packed = pack(noise.clone());
        assert_eq!(packed[0], PLAIN);
        assert_eq!(unpack(&packed).unwrap().as_ref(), noise.as_slice());
    }

    #[test]
    fn damaged_values_are_errors() {
        let packed = pack(b"x".repeat(2000));
        assert!(unpack(&packed[..packed.len() / 2])
            .unwrap_err()
            .contains("cut short"));
        assert!(unpack(&[9, 1, 2])
            .unwrap_err()
            .contains("unknown value tag 9"));
        assert!(unpack(&[]).unwrap_err().contains("empty"));
    }

    #[test]
    fn an_untagged_directory_is_converted_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let state = db.open_tree("state").unwrap();
        let log = db.open_tree("raft_log").unwrap();
        let record = b"r".repeat(1000);
        state.insert(b"app/ns/a", record.as_slice()).unwrap();
        state.insert(b"\0meta/applied", b"m".as_slice()).unwrap();
        log.insert(1u64.to_be_bytes(), b"entry".as_slice()).unwrap();

        upgrade(&db).unwrap();
        let stored = state.get(b"app/ns/a").unwrap().unwrap();
        assert_eq!(unpack(&stored).unwrap().as_ref(), record.as_slice());
        assert!(stored.len() < record.len());
        assert_eq!(
            state.get(b"\0meta/applied").unwrap().unwrap().as_ref(),
            b"m",
            "meta keys stay plain"
        );
        let entry = log.get(1u64.to_be_bytes()).unwrap().unwrap();
        assert_eq!(unpack(&entry).unwrap().as_ref(), b"entry");

        // Opened again: nothing is converted twice.
        upgrade(&db).unwrap();
        let again = log.get(1u64.to_be_bytes()).unwrap().unwrap();
        assert_eq!(again, entry);
    }

    #[test]
    fn an_unknown_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let marker = db.open_tree(MARKER_TREE).unwrap();
        marker.insert(MARKER_KEY, b"tagged-9".as_slice()).unwrap();
        let err = upgrade(&db).unwrap_err().to_string();
        assert!(err.contains("tagged-9"), "{err}");
    }
}
