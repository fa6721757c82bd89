//! Tls analyzer (placeholder: recognises nothing yet, so connections fall back to raw streams).

use super::detect::Verdict;
use super::stream::RawStream;
use super::StreamAnalyzer;
use crate::record::Dir;

/// What Tls adds to the IRI.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TlsEvent {}

pub fn probe(_dir: Dir, _first: &[u8]) -> Verdict {
    Verdict::NoMatch
}

pub fn analyzer() -> Box<dyn StreamAnalyzer> {
    Box::new(RawStream::new())
}
