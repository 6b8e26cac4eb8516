//! [`StackProfile`] → `perftools.profiles.Profile`, gzipped like Go's `/debug/pprof/*`.

use std::collections::HashMap;
use std::io::Write;
use std::time::UNIX_EPOCH;

use prost::Message;

use super::proto;
use super::{Error, Frame, StackProfile};

/// Interns strings; index 0 is the empty string, as the format requires.
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings::default();
        s.id("");
        s
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Builds the protobuf message. One `Function` per (name, file), one `Location` per
/// (function, line); no mappings or addresses: frames are already symbolized.
pub fn to_proto(p: &StackProfile) -> proto::Profile {
    let mut strings = Strings::new();
    let mut functions: Vec<proto::Function> = Vec::new();
    let mut function_ids: HashMap<(String, Option<String>), u64> = HashMap::new();
    let mut locations: Vec<proto::Location> = Vec::new();
    let mut location_ids: HashMap<(u64, u32), u64> = HashMap::new();

    let mut location_of = |f: &Frame, strings: &mut Strings| -> u64 {
        let key = (f.function.clone(), f.file.clone());
        let function_id = match function_ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = functions.len() as u64 + 1;
                let name = strings.id(&f.function);
                functions.push(proto::Function {
                    id,
                    name,
                    system_name: name,
                    filename: strings.id(f.file.as_deref().unwrap_or("")),
                    start_line: 0,
                });
                function_ids.insert(key, id);
                id
            }
        };
        *location_ids.entry((function_id, f.line)).or_insert_with(|| {
            let id = locations.len() as u64 + 1;
            locations.push(proto::Location {
                id,
                mapping_id: 0,
                address: 0,
                line: vec![proto::Line { function_id, line: i64::from(f.line) }],
                is_folded: false,
            });
            id
        })
    };

    let sample_type: Vec<proto::ValueType> =
        p.sample_types.iter().map(|(t, u)| proto::ValueType { r#type: strings.id(t), unit: strings.id(u) }).collect();
    let period_type =
        Some(proto::ValueType { r#type: strings.id(&p.period_type.0), unit: strings.id(&p.period_type.1) });

    let mut samples = Vec::with_capacity(p.samples.len());
    for s in &p.samples {
        // pprof wants the leaf first.
        let location_id = s.frames.iter().rev().map(|f| location_of(f, &mut strings)).collect();
        let label = s
            .labels
            .iter()
            .map(|(k, v)| proto::Label { key: strings.id(k), str: strings.id(v), num: 0, num_unit: 0 })
            .collect();
        samples.push(proto::Sample { location_id, value: s.values.clone(), label });
    }
    let comment = p.comments.iter().map(|c| strings.id(c)).collect();
    let default_sample_type = p.sample_types.get(p.default_sample_type).map_or(0, |(t, _)| strings.id(t));
    proto::Profile {
        sample_type,
        sample: samples,
        mapping: Vec::new(),
        location: locations,
        function: functions,
        string_table: strings.table,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: p.start.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64),
        duration_nanos: p.duration.as_nanos().min(i64::MAX as u128) as i64,
        period_type,
        period: p.period,
        comment,
        default_sample_type,
    }
}

/// The gzipped protobuf, as served by `/debug/pprof/profile` by default.
pub fn encode_gzip(p: &StackProfile) -> Result<Vec<u8>, Error> {
    let raw = to_proto(p).encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 3 + 64), flate2::Compression::default());
    gz.write_all(&raw)?;
    Ok(gz.finish()?)
}

/// Reads a (possibly gzipped) encoded profile back: for tests and `pinchpoint flame`.
pub fn decode(bytes: &[u8]) -> Result<proto::Profile, Error> {
    let raw;
    let body = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    proto::Profile::decode(body).map_err(|e| Error::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Kind, Sample};
    use std::time::{Duration, SystemTime};

    #[test]
    fn round_trip_keeps_stacks_and_types() {
        let p = StackProfile {
            kind: Kind::Contention,
            sample_types: vec![("contentions".into(), "count".into()), ("delay".into(), "nanoseconds".into())],
            default_sample_type: 1,
            period_type: ("contentions".into(), "count".into()),
            period: 1,
            start: SystemTime::now(),
            duration: Duration::from_secs(1),
            comments: vec!["hello".into()],
            samples: vec![Sample {
                frames: vec![Frame::synthetic("main"), Frame::synthetic("lock:x")],
                values: vec![3, 3000],
                labels: vec![("resource".into(), "lock:x".into())],
            }],
        };
        let d = decode(&encode_gzip(&p).unwrap()).unwrap();
        let s = |i: i64| d.string_table[i as usize].as_str();
        assert_eq!(s(d.sample_type[1].r#type), "delay");
        assert_eq!(s(d.default_sample_type), "delay");
        assert_eq!(d.period, 1);
        assert_eq!(d.sample[0].value, vec![3, 3000]);
        let leaf = d.sample[0].location_id[0];
        let loc = d.location.iter().find(|l| l.id == leaf).unwrap();
        let f = d.function.iter().find(|f| f.id == loc.line[0].function_id).unwrap();
        assert_eq!(s(f.name), "lock:x");
    }
}
