//! What the phases wrote, read back: kept apart from the sections so each
//! section looks values up by name and never deals with files or JSON.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{
    CLIENT, HERD, IDLE, PEER_CACHED, PEER_CONCURRENT, PEER_EXPIRY, PEER_FORCED, PEER_HEAD_OF_LINE,
    PEER_MEMORY, PEER_MEMORY_IDLE, PEER_WAKEUPS, PROXY, SCALE, load_file,
};
use crate::{herd, procfs, proxy, scale, throughput};

#[derive(Debug, Deserialize)]
pub(super) struct Hyperfine {
    pub(super) results: Vec<Command>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Command {
    pub(super) command: String,
    pub(super) mean: f64,
    pub(super) stddev: Option<f64>,
    pub(super) median: f64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) times: Option<Vec<f64>>,
}

pub(super) struct Results {
    pub(super) client: Option<Hyperfine>,
    pub(super) peer: [Option<Hyperfine>; 5],
    pub(super) peer_memory: Option<Vec<procfs::Memory>>,
    pub(super) peer_memory_idle: Option<Vec<procfs::Memory>>,
    pub(super) peer_wakeups: Option<Vec<procfs::Wakeups>>,
    pub(super) loads: Vec<(String, Vec<throughput::Outcome>)>,
    pub(super) herd: Option<herd::Outcome>,
    pub(super) scale: Option<Vec<scale::Step>>,
    pub(super) idle: Option<procfs::Idle>,
    pub(super) proxy: Option<proxy::Outcome>,
}

fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> anyhow::Result<Option<T>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not what the bench wrote", path.display()))
            .map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

impl Results {
    /// Every phase's file in `dir`; a phase that did not run has none.
    pub(super) fn from_dir(dir: &Path) -> anyhow::Result<Results> {
        let mut loads = Vec::new();
        for mode in ["bincode", "json", "ssh-agent"] {
            if let Some(outcomes) = read(dir, &load_file(mode))? {
                loads.push((mode.to_owned(), outcomes));
            }
        }
        Ok(Results {
            client: read(dir, CLIENT)?,
            peer: [
                read(dir, PEER_CACHED)?,
                read(dir, PEER_FORCED)?,
                read(dir, PEER_CONCURRENT)?,
                read(dir, PEER_EXPIRY)?,
                read(dir, PEER_HEAD_OF_LINE)?,
            ],
            peer_memory: read(dir, PEER_MEMORY)?,
            peer_memory_idle: read(dir, PEER_MEMORY_IDLE)?,
            peer_wakeups: read(dir, PEER_WAKEUPS)?,
            loads,
            herd: read(dir, HERD)?,
            scale: read(dir, SCALE)?,
            idle: read(dir, IDLE)?,
            proxy: read(dir, PROXY)?,
        })
    }

    /// A median of part 7's `part`-th export.
    pub(super) fn peer_median(&self, part: usize, name: &str) -> Option<f64> {
        self.peer[part]
            .as_ref()?
            .results
            .iter()
            .find(|c| c.command == name)
            .map(|c| c.median)
    }

    pub(super) fn median(&self, name: &str) -> Option<f64> {
        self.command(name).map(|c| c.median)
    }

    fn command(&self, name: &str) -> Option<&Command> {
        self.client
            .as_ref()?
            .results
            .iter()
            .find(|c| c.command == name)
    }

    pub(super) fn load(&self, mode: &str, connections: usize) -> Option<&throughput::Outcome> {
        self.loads
            .iter()
            .find(|(m, _)| m == mode)?
            .1
            .iter()
            .find(|o| o.connections == connections)
    }
}
