//! Transport compression, as Discord does it: with `compress=zlib-stream` or
//! `compress=zstd-stream` in the gateway URL every payload the server sends goes through
//! one compression stream kept for the whole connection, flushed after each payload and
//! sent as a binary frame. A zlib payload ends with the sync-flush marker `00 00 ff ff`;
//! a client inflates every frame with one inflate context. Without `compress` payloads
//! are plain text frames.

use std::io::Write;

use flate2::write::ZlibEncoder;

/// zstd's window for gateway streams: small enough that a connection's context stays
/// small, large enough for repeated dispatch shapes.
const ZSTD_WINDOW_LOG: u32 = 17;
const ZSTD_LEVEL: i32 = 3;

/// The compression a connection asked for.
pub enum Compressor {
    /// Text frames.
    Plain,
    /// One zlib stream per connection, sync-flushed after every payload.
    Zlib(Box<ZlibEncoder<Vec<u8>>>),
    /// One zstd stream per connection, flushed after every payload.
    Zstd(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

/// What the `compress` query parameter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    ZlibStream,
    ZstdStream,
}

impl Compression {
    /// Parses the `compress` parameter; `Err` for a value Discord does not know.
    pub fn parse(value: Option<&str>) -> Result<Compression, ()> {
        match value {
            None | Some("") => Ok(Compression::None),
            Some("zlib-stream") => Ok(Compression::ZlibStream),
            Some("zstd-stream") => Ok(Compression::ZstdStream),
            Some(_) => Err(()),
        }
    }
}

impl Compressor {
    /// The stream context for a connection (allocated only when compression is asked).
    pub fn new(compression: Compression) -> std::io::Result<Compressor> {
        Ok(match compression {
            Compression::None => Compressor::Plain,
            Compression::ZlibStream => Compressor::Zlib(Box::new(ZlibEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            ))),
            Compression::ZstdStream => {
                let mut e = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
                e.window_log(ZSTD_WINDOW_LOG)?;
                e.include_checksum(false)?;
                Compressor::Zstd(Box::new(e))
            }
        })
    }

    /// Compresses one payload and flushes the stream; `None` for plain text frames.
    /// Whether payloads go out as they are (text frames).
    pub fn is_plain(&self) -> bool {
        matches!(self, Compressor::Plain)
    }

    pub fn compress(&mut self, payload: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            Compressor::Plain => Ok(None),
            Compressor::Zlib(z) => {
                z.write_all(payload)?;
                // flate2's flush is a sync flush: the output ends with 00 00 ff ff.
                z.flush()?;
                Ok(Some(std::mem::take(z.get_mut())))
            }
            Compressor::Zstd(z) => {
                z.write_all(payload)?;
                z.flush()?;
                Ok(Some(std::mem::take(z.get_mut())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn zlib_frames_end_with_the_sync_marker_and_inflate_as_one_stream() {
        let mut c = Compressor::new(Compression::ZlibStream).unwrap();
        let mut inflate = flate2::Decompress::new(true);
        for i in 0..3 {
            let payload = format!("{{\"op\":0,\"s\":{i},\"d\":\"hello hello hello\"}}");
            let frame = c.compress(payload.as_bytes()).unwrap().unwrap();
            assert!(frame.ends_with(&[0, 0, 0xff, 0xff]));
            let mut out = Vec::with_capacity(1024);
            inflate
                .decompress_vec(&frame, &mut out, flate2::FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, payload.as_bytes());
        }
    }

    #[test]
    fn zstd_frames_decode_as_one_stream() {
        let mut c = Compressor::new(Compression::ZstdStream).unwrap();
        let mut all = Vec::new();
        let mut expected: Vec<u8> = Vec::new();
        for i in 0..3 {
            let payload = format!("{{\"op\":0,\"s\":{i}}}");
            all.extend(c.compress(payload.as_bytes()).unwrap().unwrap());
            expected.extend(payload.as_bytes());
        }
        // The stream is never finished (one frame for the connection): read what the
        // flushes made decodable.
        let mut d = zstd::stream::read::Decoder::new(&all[..]).unwrap();
        let mut out = vec![0; expected.len()];
        d.read_exact(&mut out).unwrap();
        assert_eq!(out, expected);
        assert_eq!(Compression::parse(Some("gzip")), Err(()));
    }
}
