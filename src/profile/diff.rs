//! Differential flamegraphs: what a tuning change moved.
//!
//! The SVG has the shape of AFTER, each frame coloured by how much its share grew (red) or
//! shrank (blue) relative to BEFORE (inferno's `difffolded` + `flamegraph`). With `normalize`
//! BEFORE's total is scaled to AFTER's first, so captures of different length or load compare
//! by proportion rather than by absolute count.

use std::io::BufReader;

use inferno::differential;

use super::flame::svg_from_folded;
use super::Error;

/// The two-column folded text (`stack BEFORE AFTER`) inferno draws differentials from.
pub fn diff_folded(before: &str, after: &str, normalize: bool) -> Result<String, Error> {
    let mut out = Vec::new();
    let opts = differential::Options { normalize, strip_hex: true };
    differential::from_readers(opts, BufReader::new(before.as_bytes()), BufReader::new(after.as_bytes()), &mut out)
        .map_err(|e| Error::Encode(e.to_string()))?;
    String::from_utf8(out).map_err(|e| Error::Encode(e.to_string()))
}

/// A differential flamegraph SVG of two folded captures.
pub fn diff_svg(before: &str, after: &str, normalize: bool, title: &str) -> Result<Vec<u8>, Error> {
    let lines = diff_folded(before, after, normalize)?;
    let mut o = inferno::flamegraph::Options::default();
    o.title = title.to_string();
    o.subtitle = Some("red: grew from before to after, blue: shrank; widths are after".into());
    o.deterministic = true;
    svg_from_folded(&lines, o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_of_two_captures_is_svg() {
        let before = "main;a 10\nmain;b 10\n";
        let after = "main;a 2\nmain;b 18\n";
        let two = diff_folded(before, after, false).unwrap();
        assert!(two.contains("main;a 10 2"), "{two}");
        let svg = String::from_utf8(diff_svg(before, after, true, "t").unwrap()).unwrap();
        assert!(svg.contains("<svg"));
    }
}
