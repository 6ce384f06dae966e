//! The compression of output rasters: `--compress METHOD[:LEVEL]` for a whole command (DEFLATE, ZSTD, LZW or
//! NONE), with the horizontal predictor for integers and none for floats. The floating-point predictor made
//! carbonmap's float products larger, not smaller, and took time both ways: on the README's real runs
//! (Exeter's NDVI, NPP, Rh, NEP, draws and sensitivity rasters, 33 files) DEFLATE level 1 wrote 10.9 MB with it
//! and 9.4 MB without; an NDVI of a Sentinel-2 L1C scene (1536 x 768 px) 3.0 MB with it and 1.3 MB without.
//! The low bits of computed values are noise, which the predictor's byte differences spread over every byte.

use std::str::FromStr;
use std::sync::OnceLock;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Deflate,
    Zstd,
    Lzw,
    None,
}

/// A compression method and its level (None: GDAL's default level for the method).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub method: Method,
    pub level: Option<u32>,
}

/// The default: DEFLATE, readable by every GIS, at libdeflate's level 1, which on carbonmap's float rasters
/// compresses within a few per cent of level 6 in a fraction of the time (`scripts/bench-chain.sh`).
pub const DEFAULT: Codec = Codec {
    method: Method::Deflate,
    level: Some(1),
};

impl FromStr for Codec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Codec> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "--compress {s}: {why} (expected deflate, zstd, lzw or none, optionally :LEVEL, e.g. deflate:6)"
            ))
        };
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (
                n,
                Some(
                    l.parse::<u32>()
                        .map_err(|_| bad("the level is not a whole number"))?,
                ),
            ),
            None => (s, None),
        };
        let method = match name.to_ascii_lowercase().as_str() {
            "deflate" => Method::Deflate,
            "zstd" => Method::Zstd,
            "lzw" => Method::Lzw,
            "none" => Method::None,
            _ => return Err(bad("unknown method")),
        };
        let range = match method {
            Method::Deflate => Some(1..=12),
            Method::Zstd => Some(1..=22),
            Method::Lzw | Method::None => None,
        };
        match (level, range) {
            (Some(_), None) => Err(bad("this method has no level")),
            (Some(l), Some(r)) if !r.contains(&l) => Err(bad(&format!(
                "level {l} is outside {}..={}",
                r.start(),
                r.end()
            ))),
            _ => Ok(Codec { method, level }),
        }
    }
}

impl Codec {
    /// GDAL GeoTIFF (and COG) creation options.
    pub fn creation_options(&self, is_float: bool) -> Vec<(&'static str, String)> {
        let mut co = vec![(
            "COMPRESS",
            match self.method {
                Method::Deflate => "DEFLATE",
                Method::Zstd => "ZSTD",
                Method::Lzw => "LZW",
                Method::None => "NONE",
            }
            .to_string(),
        )];
        if self.method != Method::None && !is_float {
            co.push(("PREDICTOR", "2".to_string()));
        }
        match (self.method, self.level) {
            (Method::Deflate, Some(l)) => co.push(("ZLEVEL", l.to_string())),
            (Method::Zstd, Some(l)) => co.push(("ZSTD_LEVEL", l.to_string())),
            _ => {}
        }
        co
    }

    /// As written into outputs' metadata, e.g. `DEFLATE:1`.
    pub fn name(&self) -> String {
        let m = format!("{:?}", self.method).to_ascii_uppercase();
        match self.level {
            Some(l) => format!("{m}:{l}"),
            None => m,
        }
    }
}

static CURRENT: OnceLock<Codec> = OnceLock::new();

/// Choose the codec for this process (the command line's `--compress`); the first choice wins.
pub fn set(codec: Codec) {
    let _ = CURRENT.set(codec);
}

/// The codec outputs are written with.
pub fn current() -> Codec {
    *CURRENT.get().unwrap_or(&DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_methods_and_levels_and_refuses_the_rest() {
        assert_eq!("deflate".parse::<Codec>().unwrap().level, None);
        assert_eq!("ZSTD:3".parse::<Codec>().unwrap().method, Method::Zstd);
        assert_eq!("deflate:9".parse::<Codec>().unwrap().level, Some(9));
        for bad in ["gzip", "lzw:2", "deflate:0", "deflate:x", "zstd:23"] {
            assert!(bad.parse::<Codec>().is_err(), "{bad}");
        }
        let co = "zstd:1".parse::<Codec>().unwrap().creation_options(true);
        assert!(co.contains(&("ZSTD_LEVEL", "1".into())));
        assert!(
            !co.iter().any(|(k, _)| *k == "PREDICTOR"),
            "floats: no predictor"
        );
        let co = "zstd:1".parse::<Codec>().unwrap().creation_options(false);
        assert!(co.contains(&("PREDICTOR", "2".into())));
        assert_eq!(
            "none"
                .parse::<Codec>()
                .unwrap()
                .creation_options(false)
                .len(),
            1
        );
    }
}
