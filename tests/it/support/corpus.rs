//! The real-material audio corpus: sources as the world makes them, generated at test time into a cache under
//! `target/tmp` (reused while [`CORPUS_VERSION`] is unchanged, so the 25-minute track is made once; built from
//! scratch in a fresh checkout). Realistic music comes from [`super::music`] (fluidsynth); the rest is derived from
//! it or made with ffmpeg: mono in stereo, true mono, silence, near-silence, very quiet music, a 0.5 s and a
//! 25-minute track, 24-bit/96 kHz, 5.1, 22.05 and 32 kHz, 8-bit and float WAV, ALAC, WavPack, and lossy MP3/AAC.
//! APE is absent: Debian has no APE encoder (ffmpeg only decodes it, `monkeys-audio` is not packaged) and no
//! binary is committed.
//!
//! Reusable: [`Corpus::get`] returns every [`CorpusSource`] with what it is (rate, channels, length, lossy bitrate)
//! as generated, for any test that wants real material.

#![allow(dead_code)] // a reusable generator: not every test reads every field

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::audio::run;
use super::music::{render_with_fluidsynth, write_midi, MusicSpec};

/// Bump when a source's recipe changes: the cache is keyed by it.
pub const CORPUS_VERSION: &str = "v1";
/// The music every derived source starts from: 92 bars at 120 bpm (184 s, so every 180 s cut is whole).
pub const MUSIC: MusicSpec = MusicSpec { bars: 92, tempo_bpm: 120, seed: 7 };
/// Length of the long track.
pub const LONG_SECS: f64 = 25.0 * 60.0;

/// How a source is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCodec {
    Lossless,
    /// A lossy source at this bitrate (kbit/s).
    Lossy(u32),
}

/// One file of the corpus, described by its recipe (not by reading it back).
#[derive(Debug, Clone)]
pub struct CorpusSource {
    /// Short name, also the file's stem.
    pub id: &'static str,
    /// The file name (as in a torrent).
    pub file_name: String,
    pub path: PathBuf,
    pub secs: f64,
    pub rate_hz: u32,
    pub channels: u32,
    pub codec: SourceCodec,
    /// Bits per sample of a lossless source.
    pub bits: Option<u32>,
    /// Digital silence or close to it (a variable-bitrate encode of it is nearly empty).
    pub silent: bool,
    pub what: &'static str,
}

/// The generated corpus.
#[derive(Debug)]
pub struct Corpus {
    pub dir: PathBuf,
    pub sources: Vec<CorpusSource>,
    /// A 600 x 600 JPEG cover next to the sources.
    pub cover: PathBuf,
}

/// A recipe: the source's facts and the ffmpeg arguments that make it (`{music}` stands for the rendered music).
struct Recipe {
    source: CorpusSource,
    args: Vec<String>,
}

fn recipe(
    id: &'static str,
    extension: &str,
    facts: (f64, u32, u32, SourceCodec, Option<u32>),
    what: &'static str,
    args: &[&str],
) -> Recipe {
    let (secs, rate_hz, channels, codec, bits) = facts;
    let file_name = format!("{id}.{extension}");
    Recipe {
        source: CorpusSource {
            id,
            file_name,
            path: PathBuf::new(),
            secs,
            rate_hz,
            channels,
            codec,
            bits,
            silent: matches!(id, "silence" | "near_silence"),
            what,
        },
        args: args.iter().map(|arg| arg.to_string()).collect(),
    }
}

fn recipes() -> Vec<Recipe> {
    use SourceCodec::{Lossless, Lossy};
    let flac16 = ["-c:a", "flac", "-sample_fmt", "s16"];
    let with = |input: &[&'static str], filters: Option<&'static str>, output: &[&'static str]| -> Vec<&'static str> {
        let mut args: Vec<&'static str> = input.to_vec();
        if let Some(filters) = filters {
            args.extend(["-af", filters]);
        }
        args.extend(output);
        args
    };
    let from_music = |secs: &'static str| -> [&'static str; 4] { ["-t", secs, "-i", "{music}"] };
    vec![
        recipe(
            "music",
            "flac",
            (180.0, 44_100, 2, Lossless, Some(16)),
            "3 minutes of rendered band music",
            &with(&from_music("180"), None, &flac16),
        ),
        recipe(
            "mono_in_stereo",
            "flac",
            (60.0, 44_100, 2, Lossless, Some(16)),
            "a mono recording: two identical channels",
            &with(&from_music("60"), Some("pan=stereo|c0=0.5*c0+0.5*c1|c1=0.5*c0+0.5*c1"), &flac16),
        ),
        recipe(
            "true_mono",
            "flac",
            (60.0, 44_100, 1, Lossless, Some(16)),
            "one channel",
            &with(&from_music("60"), Some("pan=mono|c0=0.5*c0+0.5*c1"), &flac16),
        ),
        recipe(
            "quiet",
            "flac",
            (60.0, 44_100, 2, Lossless, Some(16)),
            "the music 40 dB down (peaks near -45 dBFS)",
            &with(&from_music("60"), Some("volume=-40dB"), &flac16),
        ),
        recipe(
            "near_silence",
            "flac",
            (20.0, 44_100, 2, Lossless, Some(16)),
            "faint hiss around -80 dBFS",
            &with(
                &["-f", "lavfi", "-i", "anoisesrc=d=20:c=white:r=44100:a=0.0001:s=3"],
                Some("pan=stereo|c0=c0|c1=c0"),
                &flac16,
            ),
        ),
        recipe(
            "silence",
            "flac",
            (20.0, 44_100, 2, Lossless, Some(16)),
            "digital silence",
            &with(&["-f", "lavfi", "-t", "20", "-i", "anullsrc=r=44100:cl=stereo"], None, &flac16),
        ),
        recipe(
            "short",
            "flac",
            (0.5, 44_100, 2, Lossless, Some(16)),
            "half a second",
            &with(&["-ss", "30", "-t", "0.5", "-i", "{music}"], None, &flac16),
        ),
        recipe(
            "long",
            "flac",
            (LONG_SECS, 44_100, 2, Lossless, Some(16)),
            "25 minutes (the music looped)",
            &with(&["-stream_loop", "-1", "-t", "1500", "-i", "{music}"], None, &flac16),
        ),
        recipe(
            "hires",
            "flac",
            (30.0, 96_000, 2, Lossless, Some(24)),
            "24-bit / 96 kHz",
            &with(
                &from_music("30"),
                Some("aresample=96000:resampler=soxr"),
                &["-c:a", "flac", "-sample_fmt", "s32", "-bits_per_raw_sample", "24"],
            ),
        ),
        recipe(
            "surround",
            "flac",
            (30.0, 48_000, 6, Lossless, Some(16)),
            "5.1 at 48 kHz",
            &with(
                &from_music("30"),
                Some("aresample=48000,pan=5.1|FL=c0|FR=c1|FC=0.5*c0+0.5*c1|LFE=0.3*c0+0.3*c1|BL=0.6*c0|BR=0.6*c1"),
                &flac16,
            ),
        ),
        recipe(
            "rate_22k",
            "flac",
            (30.0, 22_050, 2, Lossless, Some(16)),
            "22.05 kHz",
            &with(&from_music("30"), Some("aresample=22050"), &flac16),
        ),
        recipe(
            "rate_32k",
            "flac",
            (30.0, 32_000, 2, Lossless, Some(16)),
            "32 kHz",
            &with(&from_music("30"), Some("aresample=32000"), &flac16),
        ),
        recipe(
            "eight_bit",
            "wav",
            (20.0, 44_100, 2, Lossless, Some(8)),
            "8-bit PCM WAV",
            &with(&from_music("20"), None, &["-c:a", "pcm_u8"]),
        ),
        recipe(
            "float",
            "wav",
            (20.0, 44_100, 2, Lossless, Some(32)),
            "32-bit float WAV",
            &with(&from_music("20"), None, &["-c:a", "pcm_f32le"]),
        ),
        recipe(
            "alac",
            "m4a",
            (20.0, 44_100, 2, Lossless, Some(16)),
            "ALAC in MP4",
            &with(&from_music("20"), None, &["-c:a", "alac", "-sample_fmt", "s16p"]),
        ),
        recipe(
            "wavpack",
            "wv",
            (20.0, 44_100, 2, Lossless, Some(16)),
            "WavPack",
            &with(&from_music("20"), None, &["-c:a", "wavpack", "-sample_fmt", "s16p"]),
        ),
        recipe(
            "mp3_128",
            "mp3",
            (30.0, 44_100, 2, Lossy(128), None),
            "MP3 CBR 128 kbit/s",
            &with(&from_music("30"), None, &["-c:a", "libmp3lame", "-b:a", "128k"]),
        ),
        recipe(
            "aac_96",
            "m4a",
            (30.0, 44_100, 2, Lossy(96), None),
            "AAC 96 kbit/s",
            &with(&from_music("30"), None, &["-c:a", "aac", "-b:a", "96k"]),
        ),
    ]
}

impl Corpus {
    /// The corpus, generated on first use (in this process, and across runs while the cache is intact).
    pub fn get() -> &'static Corpus {
        static CORPUS: OnceLock<Corpus> = OnceLock::new();
        CORPUS.get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("audio-corpus-{CORPUS_VERSION}"));
            if !root.join("complete").is_file() {
                generate(&root);
            }
            let mut sources: Vec<CorpusSource> = recipes().into_iter().map(|recipe| recipe.source).collect();
            for source in &mut sources {
                source.path = root.join(&source.file_name);
            }
            Corpus { cover: root.join("cover.jpg"), dir: root, sources }
        })
    }

    /// The source called `id`.
    pub fn source(&self, id: &str) -> &CorpusSource {
        self.sources.iter().find(|source| source.id == id).unwrap_or_else(|| panic!("no corpus source {id}"))
    }
}

/// Generates everything into a fresh directory next to `root`, then renames it into place (a run killed halfway
/// leaves no half corpus behind).
fn generate(root: &Path) {
    let parent = root.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    let building =
        parent.join(format!("{}.building-{}", root.file_name().unwrap().to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building).unwrap();
    eprintln!("generating the audio corpus {CORPUS_VERSION} into {} ...", root.display());

    let midi = building.join("music.mid");
    write_midi(&midi, MUSIC);
    let rendered = building.join("rendered.wav");
    render_with_fluidsynth(&midi, &rendered, 44_100);
    // The render is the music plus the instruments' release: at least the 180 s every recipe cuts from.
    let music = rendered.to_str().unwrap().to_string();

    let recipes = recipes();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let idx = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(recipe) = recipes.get(idx) else { break };
                let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error", "-y"].map(String::from).to_vec();
                args.extend(recipe.args.iter().map(|arg| arg.replace("{music}", &music)));
                args.push(building.join(&recipe.source.file_name).to_str().unwrap().to_string());
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                run("ffmpeg", &refs);
            });
        }
    });
    super::audio::write_image(&building.join("cover.jpg"), 600, 600);
    std::fs::remove_file(&rendered).unwrap();
    std::fs::write(building.join("complete"), CORPUS_VERSION).unwrap();
    let _ = std::fs::remove_dir_all(root);
    std::fs::rename(&building, root).unwrap();
}
