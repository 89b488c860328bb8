//! Legal `.torrent` files written in the test, with the bencode crate the project uses (not with the code under
//! test): any name, file list, trackers and web seeds, and their real v1 info hash (SHA-1 of the encoded info
//! dictionary, computed here independently of the service's parser).

#![allow(dead_code)]

use std::collections::HashMap;

use serde_bencode::value::Value;
use sha1::{Digest, Sha1};

/// What to put into a `.torrent`.
#[derive(Debug, Clone)]
pub struct TorrentSpec {
    /// The info dictionary's `name` (the top folder of a multi-file torrent).
    pub name: String,
    /// Paths under `name` (`/`-separated) and sizes.
    pub files: Vec<(String, u64)>,
    pub piece_length: u64,
    /// Top-level keys outside the info dictionary (`announce`, `announce-list`, `url-list`, `nodes`, ...).
    pub top_level: Vec<(String, Value)>,
}

impl TorrentSpec {
    pub fn new(name: &str, files: Vec<(String, u64)>) -> TorrentSpec {
        TorrentSpec { name: name.to_string(), files, piece_length: 1 << 22, top_level: Vec::new() }
    }

    /// Adds a top-level key.
    pub fn with(mut self, key: &str, value: Value) -> TorrentSpec {
        self.top_level.push((key.to_string(), value));
        self
    }

    fn info(&self) -> Value {
        let total: u64 = self.files.iter().map(|(_, size)| size).sum();
        let pieces = total.div_ceil(self.piece_length).max(1);
        let piece_hashes: Vec<u8> = (0..pieces).flat_map(|n| Sha1::digest(n.to_be_bytes()).to_vec()).collect();
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|(path, size)| {
                dict(vec![
                    ("length", Value::Int(i64::try_from(*size).unwrap())),
                    ("path", Value::List(path.split('/').map(bytes).collect())),
                ])
            })
            .collect();
        dict(vec![
            ("files", Value::List(files)),
            ("name", bytes(&self.name)),
            ("piece length", Value::Int(i64::try_from(self.piece_length).unwrap())),
            ("pieces", Value::Bytes(piece_hashes)),
        ])
    }

    /// The v1 info hash (40 lower-case hex characters).
    pub fn info_hash(&self) -> String {
        let encoded = serde_bencode::to_bytes(&self.info()).unwrap();
        hex::encode(Sha1::digest(encoded))
    }

    /// The bencoded file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut top: Vec<(&str, Value)> = self.top_level.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        top.push(("info", self.info()));
        serde_bencode::to_bytes(&dict(top)).unwrap()
    }
}

/// A bencode byte string.
pub fn bytes(text: &str) -> Value {
    Value::Bytes(text.as_bytes().to_vec())
}

/// A bencode dictionary (the encoder sorts the keys).
pub fn dict(entries: Vec<(&str, Value)>) -> Value {
    Value::Dict(entries.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect::<HashMap<_, _>>())
}

/// A bencode list of byte strings.
pub fn list_of(items: &[&str]) -> Value {
    Value::List(items.iter().map(|item| bytes(item)).collect())
}
