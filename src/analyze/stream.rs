//! The generic analyzer: each direction of a connection becomes one `stream` content object.
//!
//! Protocol analyzers replace it for the protocols they understand; it stays the fallback.

use super::{Cx, StreamAnalyzer};
use crate::record::{Close, Dir, ObjectId, ObjectMeta};

/// Streams each direction's bytes into its own object, opened at the first byte or gap.
#[derive(Default)]
pub struct RawStream {
    objects: [Option<ObjectId>; 2],
}

impl RawStream {
    pub fn new() -> RawStream {
        RawStream::default()
    }

    fn object(&mut self, dir: Dir, cx: &mut Cx) -> ObjectId {
        if let Some(id) = self.objects[dir.index()] {
            return id;
        }
        let meta = ObjectMeta::new("stream", "tcp", cx.flow, dir, cx.cin, cx.now);
        let id = cx.open_object(meta);
        self.objects[dir.index()] = Some(id);
        id
    }
}

impl StreamAnalyzer for RawStream {
    fn data(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx) {
        let id = self.object(dir, cx);
        cx.object_data(id, offset, bytes);
    }

    fn gap(&mut self, dir: Dir, offset: u64, len: u64, cx: &mut Cx) {
        let id = self.object(dir, cx);
        cx.object_gap(id, offset, len);
    }

    fn close(&mut self, _how: Close, cx: &mut Cx) {
        for id in self.objects.iter_mut().filter_map(Option::take) {
            cx.object_end(id, true);
        }
    }
}
