//! The audio verifier's accuracy corpus, generated at test time with the real programs and cached under
//! `target/tmp/verify-corpus-<VERSION>-<size>` (delete it, or bump [`VERSION`], to regenerate).
//!
//! Genuine lossless material: band music composed here as MIDI (piano, bass, strings, lead, a drum kit with
//! hi-hats, ride and crash cymbals) rendered by `fluidsynth` with `fluid-soundfont-gm`; solo instruments with
//! little top end (flute, cello, soft piano, nylon guitar, clarinet); lavfi noise and tones; a low-passed "old
//! mono recording" with tape hiss; soft-topped (treble-cut) music; quiet, very short and mono music; 24-bit and
//! 96 kHz material with real low bits and real ultrasonic noise. Fakes are made from the 44.1/48 kHz sources by
//! encoding to MP3 128/192/256/320 (CBR) and V0/V2, AAC 128/256, Vorbis q3/q6 and Opus 96/160 and decoding back to
//! FLAC. Each fake is labelled *detectable* or *transparent* here, independently of the verifier: its spectrum is
//! compared with its source's (ffmpeg decodes both; an FFT of this file's own averages them in 250 Hz bands), and
//! it is detectable when the codec removed a band of at least 1 kHz above 10 kHz that the source had (the
//! source at least [`HAD_DB`] over the 16-bit floor there, the fake at least [`REMOVED_DB`] under the source).
//! Also: upsampled (44.1 -> 96 / 88.2, 48 -> 192 kHz) and padded (16 bits in 24) files, and integrity cases: one
//! flipped bit that only the MD5 shows, truncated, zero-filled (WAV and FLAC, as a missing torrent piece leaves
//! them), garbage bytes; and files that must never be called corrupt (digital silence, a FLAC without an MD5).

#![allow(dead_code)] // shared by the accuracy test and the bench: not every caller reads every field

use std::path::{Path, PathBuf};
use std::process::Command;

use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

/// Bump to regenerate every cached corpus.
pub const VERSION: &str = "v3";
/// The General MIDI soundfont of Debian's `fluid-soundfont-gm`.
pub const SOUNDFONT: &str = "/usr/share/sounds/sf2/FluidR3_GM.sf2";
/// A fake is detectable where the source was at least this far over the 16-bit floor ...
pub const HAD_DB: f64 = 15.0;
/// ... and the fake at least this far under the source.
pub const REMOVED_DB: f64 = 15.0;

/// ... and no more than this over the 16-bit floor: gone, not thinned out.
pub const GONE_DB: f64 = 6.0;

/// How big a corpus to make: the test's is small enough for CI, the bench's larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorpusSize {
    Test,
    Bench,
}

/// What an item is, as its generator knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Label {
    /// Lossless material: must never be called `suspect` or `corrupt`.
    Genuine { kind: String },
    /// A lossless file made from a lossy encode of `source`.
    Fake { source: String, source_kind: String, codec: String, kbps: u32, detectable: bool },
    /// A high-rate file resampled from a lower rate.
    Upsampled { source: String },
    /// 16-bit audio in a 24-bit file.
    Padded { source: String },
    /// A damaged file; `defect` says how.
    Corrupt { defect: String },
    /// Lossless and undamaged but unusual: must never be called `corrupt` (nor `suspect`).
    Clean { what: String },
}

/// One file of the corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusItem {
    pub name: String,
    pub path: PathBuf,
    pub label: Label,
}

/// The generated corpus.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Corpus {
    pub dir: PathBuf,
    pub items: Vec<CorpusItem>,
    /// Seconds of audio of each source.
    pub source_secs: f64,
}

impl Corpus {
    pub fn item(&self, name: &str) -> &CorpusItem {
        self.items.iter().find(|item| item.name == name).unwrap_or_else(|| panic!("no corpus item {name}"))
    }
}

/// The lossy encodings fakes are made with: name, ffmpeg arguments, container extension, nominal kbit/s.
pub const CODECS: &[(&str, &[&str], &str, u32)] = &[
    ("mp3_128", &["-c:a", "libmp3lame", "-b:a", "128k"], "mp3", 128),
    ("mp3_192", &["-c:a", "libmp3lame", "-b:a", "192k"], "mp3", 192),
    ("mp3_256", &["-c:a", "libmp3lame", "-b:a", "256k"], "mp3", 256),
    ("mp3_320", &["-c:a", "libmp3lame", "-b:a", "320k"], "mp3", 320),
    ("mp3_v0", &["-c:a", "libmp3lame", "-q:a", "0"], "mp3", 245),
    ("mp3_v2", &["-c:a", "libmp3lame", "-q:a", "2"], "mp3", 190),
    ("aac_128", &["-c:a", "aac", "-b:a", "128k"], "m4a", 128),
    ("aac_256", &["-c:a", "aac", "-b:a", "256k"], "m4a", 256),
    ("vorbis_q3", &["-c:a", "libvorbis", "-q:a", "3"], "ogg", 112),
    ("vorbis_q6", &["-c:a", "libvorbis", "-q:a", "6"], "ogg", 192),
    ("opus_96", &["-c:a", "libopus", "-b:a", "96k"], "opus", 96),
    ("opus_160", &["-c:a", "libopus", "-b:a", "160k"], "opus", 160),
];

/// How a genuine source is made.
#[derive(Debug, Clone)]
enum Recipe {
    /// The band, rendered by fluidsynth.
    Band { seed: u64, tempo_bpm: u32 },
    /// One GM instrument playing a melody.
    Solo { program: u8, low_key: u8, seed: u64, velocity: u8 },
    /// An ffmpeg filter graph with one output `[out]` (`{d}` is replaced with the length, `{r}` with the rate).
    Lavfi { graph: &'static str },
    /// The band through a filter chain (`{r}` is the rate) after rendering.
    ProcessedBand { seed: u64, tempo_bpm: u32, filter: &'static str },
}

#[derive(Debug, Clone)]
struct Source {
    name: &'static str,
    kind: &'static str,
    recipe: Recipe,
    rate: u32,
    bits: u32,
    /// Whether fakes are made from it.
    faked: bool,
}

fn sources(size: CorpusSize) -> Vec<Source> {
    let band = |name, seed, tempo_bpm, rate, bits| Source {
        name,
        kind: "band",
        recipe: Recipe::Band { seed, tempo_bpm },
        rate,
        bits,
        faked: true,
    };
    let solo = |name, program, low_key, seed, velocity| Source {
        name,
        kind: "solo",
        recipe: Recipe::Solo { program, low_key, seed, velocity },
        rate: 44_100,
        bits: 16,
        faked: true,
    };
    let mut list = vec![
        band("band_a", 1, 120, 44_100, 16),
        band("band_b", 2, 96, 48_000, 24),
        solo("flute", 73, 72, 3, 80),
        solo("cello", 42, 43, 4, 90),
        solo("soft_piano", 0, 55, 5, 40),
        solo("nylon_guitar", 24, 52, 6, 85),
        Source {
            name: "noise_tones",
            kind: "lavfi",
            recipe: Recipe::Lavfi {
                graph: "anoisesrc=d={d}:r={r}:c=pink:a=0.25:s=11,tremolo=f=3:d=0.6[n];\
                        sine=f=220:d={d}:r={r}[s1];sine=f=1320:d={d}:r={r}[s2];\
                        [n][s1][s2]amix=inputs=3,aformat=channel_layouts=stereo[out]",
            },
            rate: 44_100,
            bits: 16,
            faked: true,
        },
        Source {
            name: "tones",
            kind: "lavfi",
            recipe: Recipe::Lavfi {
                graph: "sine=f=440:d={d}:r={r}[a];sine=f=2637:d={d}:r={r}[b];sine=f=7040:d={d}:r={r}[c];\
                        anoisesrc=d={d}:r={r}:c=white:a=0.0003:s=5[n];\
                        [a][b][c][n]amix=inputs=4,tremolo=f=1.5:d=0.5,aformat=channel_layouts=stereo[out]",
            },
            rate: 44_100,
            bits: 16,
            faked: true,
        },
        Source {
            name: "old_mono",
            kind: "band_limited",
            recipe: Recipe::ProcessedBand {
                seed: 7,
                tempo_bpm: 108,
                // A mono recording of its time: 24 dB/octave above 5 kHz, tape hiss all the way up.
                filter: "pan=mono|c0=0.5*c0+0.5*c1,lowpass=f=5000:p=2,lowpass=f=5000:p=2[m];\
                         anoisesrc=c=pink:a=0.004:r={r}:s=3[h];[m][h]amix=inputs=2:duration=first:normalize=0",
            },
            rate: 44_100,
            bits: 16,
            faked: true,
        },
        Source {
            name: "soft_top",
            kind: "soft_topped",
            recipe: Recipe::ProcessedBand { seed: 8, tempo_bpm: 84, filter: "treble=g=-30:f=5000:t=s:w=0.5" },
            rate: 44_100,
            bits: 16,
            faked: true,
        },
        Source {
            name: "quiet_band",
            kind: "quiet",
            recipe: Recipe::ProcessedBand { seed: 9, tempo_bpm: 132, filter: "volume=-36dB" },
            rate: 44_100,
            bits: 16,
            faked: true,
        },
        Source {
            name: "mono_piano",
            kind: "solo",
            recipe: Recipe::Solo { program: 0, low_key: 60, seed: 10, velocity: 70 },
            rate: 44_100,
            bits: 16,
            faked: false,
        },
        Source {
            name: "hires_96",
            kind: "hires",
            // 24/96 with what real converters leave above 24 kHz: noise.
            recipe: Recipe::ProcessedBand {
                seed: 11,
                tempo_bpm: 100,
                filter: "aformat=channel_layouts=stereo[m];anoisesrc=c=white:a=0.0005:r={r}:s=4[h];\
                         [m][h]amix=inputs=2:duration=first:normalize=0",
            },
            rate: 96_000,
            bits: 24,
            faked: false,
        },
    ];
    if size == CorpusSize::Bench {
        list.push(band("band_c", 21, 140, 44_100, 16));
        list.push(band("band_d", 22, 76, 44_100, 16));
        list.push(solo("clarinet", 71, 58, 23, 75));
        list.push(solo("organ", 19, 48, 24, 80));
        list.push(Source {
            name: "brown_noise",
            kind: "lavfi",
            recipe: Recipe::Lavfi {
                graph: "anoisesrc=d={d}:r={r}:c=brown:a=0.5:s=31,tremolo=f=0.7:d=0.4,\
                        aformat=channel_layouts=stereo[out]",
            },
            rate: 44_100,
            bits: 16,
            faked: true,
        });
    }
    list
}

/// Runs a program; panics with its stderr, or with the package to install.
fn run(program: &str, args: &[String]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|err| {
        let package = match program {
            "fluidsynth" => "fluidsynth fluid-soundfont-gm",
            _ => "ffmpeg",
        };
        panic!("cannot run {program} ({err}): apt-get install {package}")
    });
    assert!(output.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

fn ffmpeg(args: &[&str]) {
    let mut all: Vec<String> = ["-hide_banner", "-loglevel", "error", "-y", "-nostdin"].map(String::from).to_vec();
    all.extend(args.iter().map(|arg| arg.to_string()));
    run("ffmpeg", &all);
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A small deterministic generator for melodies.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

const TICKS: u32 = 480;

/// Notes of one channel as (start, length, key, velocity) in ticks.
fn midi_track(channel: u8, program: Option<u8>, mut notes: Vec<(u32, u32, u8, u8)>) -> Vec<TrackEvent<'static>> {
    let channel = u4::new(channel);
    let mut events: Vec<(u32, u8, TrackEventKind<'static>)> = Vec::new();
    if let Some(program) = program {
        events.push((
            0,
            0,
            TrackEventKind::Midi { channel, message: MidiMessage::ProgramChange { program: u7::new(program) } },
        ));
    }
    notes.sort();
    for (start, length, key, velocity) in notes {
        let on = MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(velocity) };
        let off = MidiMessage::NoteOff { key: u7::new(key), vel: u7::new(0) };
        events.push((start, 2, TrackEventKind::Midi { channel, message: on }));
        events.push((start + length, 1, TrackEventKind::Midi { channel, message: off }));
    }
    events.sort_by_key(|(tick, order, _)| (*tick, *order));
    let mut track = Vec::new();
    let mut last = 0;
    for (tick, _, kind) in events {
        track.push(TrackEvent { delta: u28::new(tick - last), kind });
        last = tick;
    }
    track.push(TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
    track
}

fn save_midi(path: &Path, tempo_bpm: u32, tracks: Vec<Vec<TrackEvent<'static>>>) {
    let mut smf = Smf::new(Header::new(Format::Parallel, Timing::Metrical(u15::new(TICKS as u16))));
    smf.tracks.push(vec![
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(60_000_000 / tempo_bpm))),
        },
        TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) },
    ]);
    smf.tracks.extend(tracks);
    smf.save(path).unwrap();
}

/// Bars of 4/4 that last about `secs` at `tempo_bpm`.
fn bars_for(secs: f64, tempo_bpm: u32) -> u32 {
    ((secs * f64::from(tempo_bpm) / 240.0).round() as u32).max(1)
}

/// The band: piano chords, bass, a string pad, a lead and drums with hi-hats, ride and crash cymbals.
fn write_band_midi(path: &Path, seed: u64, tempo_bpm: u32, secs: f64) {
    let bars = bars_for(secs, tempo_bpm);
    let quarter = TICKS;
    let (bar, eighth) = (4 * quarter, quarter / 2);
    let progressions: [[u8; 4]; 3] = [[48, 43, 45, 41], [50, 43, 48, 48], [45, 41, 48, 43]];
    let mut rng = Lcg(seed.wrapping_mul(7919).wrapping_add(17));
    let progression = progressions[(seed % 3) as usize];
    let (mut piano, mut bass, mut strings, mut lead, mut drums) = (vec![], vec![], vec![], vec![], vec![]);
    for bar_idx in 0..bars {
        let root = progression[(bar_idx % 4) as usize];
        let third = if matches!(root % 12, 9 | 2 | 4) { 3 } else { 4 };
        let chord = [root + 12, root + 12 + third, root + 19];
        let start = bar_idx * bar;
        strings.push((start, bar - 10, chord[0], 52));
        strings.push((start, bar - 10, chord[2] + 12, 46));
        for half in 0..2 {
            for key in chord {
                piano.push((start + half * 2 * quarter, 2 * quarter - 20, key + 12, 62 + (half * 8) as u8));
            }
        }
        for beat in 0..4 {
            bass.push((start + beat * quarter, quarter - 30, if beat % 2 == 0 { root - 12 } else { root }, 92));
        }
        let scale = [0u8, 2, third, 5, 7, 9, 11, 12];
        for step in 0..8 {
            if rng.next(4) == 0 {
                continue;
            }
            let degree = scale[rng.next(scale.len() as u64) as usize];
            let length = if rng.next(3) == 0 { quarter } else { eighth };
            lead.push((start + step * eighth, length - 10, root + 24 + degree, 70 + rng.next(30) as u8));
        }
        let ride = (bar_idx / 4) % 2 == 1;
        for beat in 0..4 {
            drums.push((
                start + beat * quarter,
                eighth,
                if beat % 2 == 0 { 36 } else { 38 },
                100 + (beat % 2) as u8 * 4,
            ));
        }
        for step in 0..8 {
            drums.push((
                start + step * eighth,
                eighth / 2,
                if ride { 51 } else { 42 },
                if step % 2 == 0 { 92 } else { 72 },
            ));
        }
        if bar_idx % 4 == 0 {
            drums.push((start, 2 * quarter, 49, 112));
        }
        if bar_idx % 4 == 3 {
            drums.push((start + 3 * quarter + eighth, eighth, 46, 96));
        }
    }
    save_midi(
        path,
        tempo_bpm,
        vec![
            midi_track(0, Some(0), piano),
            midi_track(1, Some(33), bass),
            midi_track(2, Some(48), strings),
            midi_track(3, Some(65 + (seed % 3) as u8), lead),
            midi_track(9, None, drums),
        ],
    );
}

/// A solo instrument: a melody of quarter, half and eighth notes over an octave and a half.
fn write_solo_midi(path: &Path, program: u8, low_key: u8, seed: u64, velocity: u8, secs: f64) {
    let tempo_bpm = 90;
    let total = bars_for(secs, tempo_bpm) * 4 * TICKS;
    let mut rng = Lcg(seed.wrapping_add(101));
    let steps = [0u8, 2, 4, 5, 7, 9, 11, 12, 14, 16, 17];
    let mut notes = Vec::new();
    let mut at = 0;
    while at < total {
        let length = [TICKS / 2, TICKS, TICKS, 2 * TICKS][rng.next(4) as usize];
        let key = low_key + steps[rng.next(steps.len() as u64) as usize];
        let velocity = velocity.saturating_sub(10) + rng.next(20) as u8;
        notes.push((at, length - 20, key, velocity.min(127)));
        at += length;
    }
    save_midi(path, tempo_bpm, vec![midi_track(0, Some(program), notes)]);
}

fn render(midi: &Path, out: &Path, rate: u32, float: bool) {
    assert!(Path::new(SOUNDFONT).is_file(), "{SOUNDFONT} missing: apt-get install fluid-soundfont-gm");
    let mut args: Vec<String> =
        ["-n", "-i", "-q", "-g", "0.5", "-r", &rate.to_string(), "-T", "wav"].map(String::from).to_vec();
    if float {
        args.extend(["-O".to_string(), "float".to_string()]);
    }
    args.extend(["-F".to_string(), path_str(out).to_string(), SOUNDFONT.to_string(), path_str(midi).to_string()]);
    run("fluidsynth", &args);
}

fn sample_fmt(bits: u32) -> &'static str {
    if bits > 16 {
        "s32"
    } else {
        "s16"
    }
}

/// Makes the genuine master `<dir>/sources/<name>.flac` of `source`.
fn make_source(dir: &Path, source: &Source, secs: f64) -> PathBuf {
    let work = dir.join("work");
    let out = dir.join("sources").join(format!("{}.flac", source.name));
    let rate = source.rate.to_string();
    let fmt = sample_fmt(source.bits);
    let length = format!("{secs}");
    let render_band = |seed: u64, tempo_bpm: u32| -> PathBuf {
        let midi = work.join(format!("{}.mid", source.name));
        let wav = work.join(format!("{}.wav", source.name));
        write_band_midi(&midi, seed, tempo_bpm, secs);
        render(&midi, &wav, source.rate, source.bits > 16);
        wav
    };
    match &source.recipe {
        Recipe::Band { seed, tempo_bpm } => {
            let wav = render_band(*seed, *tempo_bpm);
            ffmpeg(&["-i", path_str(&wav), "-t", &length, "-sample_fmt", fmt, "-c:a", "flac", path_str(&out)]);
        }
        Recipe::Solo { program, low_key, seed, velocity } => {
            let midi = work.join(format!("{}.mid", source.name));
            let wav = work.join(format!("{}.wav", source.name));
            write_solo_midi(&midi, *program, *low_key, *seed, *velocity, secs);
            render(&midi, &wav, source.rate, false);
            let mono = source.name.starts_with("mono");
            let mut args = vec!["-i", path_str(&wav), "-t", &length];
            if mono {
                args.extend(["-ac", "1"]);
            }
            args.extend(["-sample_fmt", fmt, "-c:a", "flac", path_str(&out)]);
            ffmpeg(&args);
        }
        Recipe::Lavfi { graph } => {
            let graph = graph.replace("{d}", &length).replace("{r}", &rate);
            ffmpeg(&["-filter_complex", &graph, "-map", "[out]", "-sample_fmt", fmt, "-c:a", "flac", path_str(&out)]);
        }
        Recipe::ProcessedBand { seed, tempo_bpm, filter } => {
            let wav = render_band(*seed, *tempo_bpm);
            let graph = format!("[0:a]{}[out]", filter.replace("{r}", &rate));
            ffmpeg(&[
                "-i",
                path_str(&wav),
                "-filter_complex",
                &graph,
                "-map",
                "[out]",
                "-t",
                &length,
                "-sample_fmt",
                fmt,
                "-c:a",
                "flac",
                path_str(&out),
            ]);
        }
    }
    out
}

/// Decodes `path` with ffmpeg to the mid channel as f32 at its own rate.
fn decode_mid(path: &Path) -> (Vec<f32>, u32) {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=sample_rate,channels",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe: apt-get install ffmpeg");
    let text = String::from_utf8_lossy(&probe.stdout);
    let mut fields = text.trim().split(',');
    let rate: u32 = fields.next().unwrap().parse().unwrap();
    let channels: u32 = fields.next().unwrap().parse().unwrap();
    let pan = if channels >= 2 { "pan=mono|c0=0.5*c0+0.5*c1" } else { "pan=mono|c0=c0" };
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-af", pan, "-f", "f32le", "-c:a", "pcm_f32le", "-"])
        .output()
        .expect("ffmpeg: apt-get install ffmpeg");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let samples = output.stdout.chunks_exact(4).map(|bytes| f32::from_le_bytes(bytes.try_into().unwrap())).collect();
    (samples, rate)
}

/// Mean power in 250 Hz bands (dB, white noise of variance s² reads s²), up to `top_hz`.
fn band_levels(samples: &[f32], rate: u32, top_hz: f64) -> Vec<(f64, f64)> {
    let len = 4096;
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(len);
    let window: Vec<f32> =
        (0..len).map(|idx| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * idx as f64 / len as f64).cos()) as f32).collect();
    let window_power: f64 = window.iter().map(|w| f64::from(w * w)).sum();
    let mut power = vec![0f64; len / 2 + 1];
    let mut frames = 0usize;
    let (mut input, mut output) = (fft.make_input_vec(), fft.make_output_vec());
    let mut start = 0;
    while start + len <= samples.len() {
        for ((slot, sample), weight) in input.iter_mut().zip(&samples[start..start + len]).zip(&window) {
            *slot = sample * weight;
        }
        fft.process(&mut input, &mut output).unwrap();
        for (sum, value) in power.iter_mut().zip(&output) {
            *sum += f64::from(value.norm_sqr());
        }
        frames += 1;
        start += len / 2;
    }
    let bin_hz = f64::from(rate) / len as f64;
    let mut bands = Vec::new();
    let mut low = 250.0;
    while low + 250.0 <= top_hz {
        let bins: Vec<f64> = (0..power.len())
            .filter(|bin| (*bin as f64 * bin_hz) >= low && (*bin as f64 * bin_hz) < low + 250.0)
            .map(|bin| power[bin] / (frames.max(1) as f64 * window_power))
            .collect();
        let mean = bins.iter().sum::<f64>() / bins.len().max(1) as f64;
        bands.push((low + 125.0, 10.0 * mean.max(1e-30).log10()));
        low += 250.0;
    }
    bands
}

/// Whether the codec removed the top of the band the source had: above some frequency of at least 10 kHz, every
/// 250 Hz band where the source stands [`HAD_DB`] over the 16-bit floor of a mid channel is at least
/// [`REMOVED_DB`] lower in the fake and within [`GONE_DB`] of that floor, and there are at least four such bands (1 kHz). A band the codec merely thinned
/// out below music it kept above is not a removed top: no long-term spectrum can show it.
pub fn removed_a_band(source: &Path, fake: &Path) -> bool {
    let (source_mid, rate) = decode_mid(source);
    let (fake_mid, fake_rate) = decode_mid(fake);
    assert_eq!(rate, fake_rate, "{} and {} differ in rate", source.display(), fake.display());
    let top = (f64::from(rate) / 2.0).min(24_000.0) - 250.0;
    let floor16 = 10.0 * ((2f64.powi(-15)).powi(2) / 12.0 / 2.0).log10();
    let source_bands = band_levels(&source_mid, rate, top);
    let fake_bands = band_levels(&fake_mid, rate, top);
    let mut removed = 0;
    for ((centre, had), (_, kept)) in source_bands.iter().zip(&fake_bands).rev() {
        if *centre < 10_000.0 {
            break;
        }
        if *had < floor16 + HAD_DB {
            continue;
        }
        if *kept <= had - REMOVED_DB && *kept <= floor16 + GONE_DB {
            removed += 1;
        } else {
            break;
        }
    }
    removed >= 4
}

/// Overwrites `len` bytes at `offset` of `path` with `byte`.
fn overwrite(path: &Path, offset: usize, len: usize, byte: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    let end = (offset + len).min(bytes.len());
    bytes[offset..end].fill(byte);
    std::fs::write(path, bytes).unwrap();
}

/// The MD5 of the audio in a FLAC file's STREAMINFO (the first metadata block, as ffmpeg writes it).
const STREAMINFO_MD5: std::ops::Range<usize> = 26..42;

fn jobs_in_parallel<T: Send>(jobs: Vec<Box<dyn FnOnce() -> T + Send + '_>>) -> Vec<T> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4);
    let queue = std::sync::Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let job = queue.lock().unwrap().pop();
                let Some((idx, job)) = job else { break };
                let result = job();
                results.lock().unwrap().push((idx, result));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(idx, _)| *idx);
    results.into_iter().map(|(_, result)| result).collect()
}

/// The corpus of `size`, generated on first use and cached (a manifest is written last, so a half-made corpus is
/// made again).
pub fn corpus(size: CorpusSize) -> Corpus {
    // Tests of one binary run in parallel: one of them makes the corpus, the others wait for it.
    static GENERATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = GENERATING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let name = match size {
        CorpusSize::Test => "test",
        CorpusSize::Bench => "bench",
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("verify-corpus-{VERSION}-{name}"));
    let manifest = dir.join("manifest.json");
    if let Ok(text) = std::fs::read_to_string(&manifest) {
        if let Ok(corpus) = serde_json::from_str::<Corpus>(&text) {
            if corpus.items.iter().all(|item| item.path.is_file()) {
                return corpus;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["sources", "work", "items"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let secs = match size {
        CorpusSize::Test => 16.0,
        CorpusSize::Bench => 30.0,
    };
    let sources = sources(size);
    let masters: Vec<PathBuf> = jobs_in_parallel(
        sources
            .iter()
            .map(|source| {
                let dir = dir.clone();
                Box::new(move || make_source(&dir, source, secs)) as Box<dyn FnOnce() -> PathBuf + Send + '_>
            })
            .collect(),
    );
    let items_dir = dir.join("items");
    let mut jobs: Vec<Box<dyn FnOnce() -> Vec<CorpusItem> + Send>> = Vec::new();
    for (source, master) in sources.iter().zip(&masters) {
        let genuine = CorpusItem {
            name: format!("{}.genuine", source.name),
            path: master.clone(),
            label: Label::Genuine { kind: source.kind.to_string() },
        };
        jobs.push(Box::new(move || vec![genuine]));
        if !source.faked {
            continue;
        }
        for (codec, args, extension, kbps) in CODECS {
            let (items_dir, work) = (items_dir.clone(), dir.join("work"));
            let (master, source) = (master.clone(), source.clone());
            jobs.push(Box::new(move || {
                let name = format!("{}.{codec}", source.name);
                let lossy = work.join(format!("{name}.{extension}"));
                let fake = items_dir.join(format!("{name}.flac"));
                let mut encode = vec!["-i", path_str(&master)];
                encode.extend(args.iter().copied());
                encode.push(path_str(&lossy));
                ffmpeg(&encode);
                let rate = source.rate.to_string();
                ffmpeg(&[
                    "-i",
                    path_str(&lossy),
                    "-ar",
                    &rate,
                    "-sample_fmt",
                    sample_fmt(source.bits),
                    "-c:a",
                    "flac",
                    path_str(&fake),
                ]);
                let detectable = removed_a_band(&master, &fake);
                vec![CorpusItem {
                    name,
                    path: fake,
                    label: Label::Fake {
                        source: source.name.to_string(),
                        source_kind: source.kind.to_string(),
                        codec: codec.to_string(),
                        kbps: *kbps,
                        detectable,
                    },
                }]
            }));
        }
    }
    let master_of = |name: &str| masters[sources.iter().position(|source| source.name == name).unwrap()].clone();
    // Upsampled and padded files.
    for (source, rate) in [("band_a", 96_000), ("soft_piano", 88_200), ("band_b", 192_000)] {
        let (master, out) = (master_of(source), items_dir.join(format!("{source}.up{}.flac", rate / 1000)));
        jobs.push(Box::new(move || {
            ffmpeg(&[
                "-i",
                path_str(&master),
                "-af",
                &format!("aresample={rate}"),
                "-sample_fmt",
                "s32",
                "-c:a",
                "flac",
                path_str(&out),
            ]);
            vec![CorpusItem {
                name: format!("{source}.up{}", rate / 1000),
                path: out,
                label: Label::Upsampled { source: source.to_string() },
            }]
        }));
    }
    for source in ["band_a", "cello"] {
        let (master, out) = (master_of(source), items_dir.join(format!("{source}.padded24.flac")));
        jobs.push(Box::new(move || {
            ffmpeg(&["-i", path_str(&master), "-sample_fmt", "s32", "-c:a", "flac", path_str(&out)]);
            vec![CorpusItem {
                name: format!("{source}.padded24"),
                path: out,
                label: Label::Padded { source: source.to_string() },
            }]
        }));
    }
    // Integrity cases.
    {
        let (master, work, items) = (master_of("band_a"), dir.join("work"), items_dir.clone());
        jobs.push(Box::new(move || {
            // One flipped bit in one sample, re-encoded (every frame CRC is right), with the original's MD5.
            let raw = work.join("band_a.s16le");
            ffmpeg(&["-i", path_str(&master), "-f", "s16le", "-c:a", "pcm_s16le", path_str(&raw)]);
            let mut pcm = std::fs::read(&raw).unwrap();
            let middle = (pcm.len() / 2) & !3;
            pcm[middle] ^= 0x01;
            std::fs::write(&raw, pcm).unwrap();
            let flipped = items.join("band_a.bitflip.flac");
            ffmpeg(&[
                "-f",
                "s16le",
                "-ar",
                "44100",
                "-ac",
                "2",
                "-i",
                path_str(&raw),
                "-c:a",
                "flac",
                path_str(&flipped),
            ]);
            let original = std::fs::read(&master).unwrap();
            let mut bytes = std::fs::read(&flipped).unwrap();
            assert_eq!(&bytes[..4], b"fLaC");
            bytes[STREAMINFO_MD5].copy_from_slice(&original[STREAMINFO_MD5]);
            std::fs::write(&flipped, bytes).unwrap();
            // Cut at 60 %.
            let truncated = items.join("band_a.truncated.flac");
            std::fs::write(&truncated, &original[..original.len() * 6 / 10]).unwrap();
            // A WAV with a 512 KiB piece of zeros inside, as a torrent client leaves a missing piece.
            let wav = items.join("band_a.zerofilled.wav");
            ffmpeg(&["-i", path_str(&master), "-c:a", "pcm_s16le", path_str(&wav)]);
            let wav_len = std::fs::metadata(&wav).unwrap().len() as usize;
            overwrite(&wav, (wav_len * 2 / 5) & !3, 512 * 1024, 0);
            vec![
                CorpusItem {
                    name: "band_a.bitflip".into(),
                    path: flipped,
                    label: Label::Corrupt { defect: "md5".into() },
                },
                CorpusItem {
                    name: "band_a.truncated".into(),
                    path: truncated,
                    label: Label::Corrupt { defect: "truncated".into() },
                },
                CorpusItem {
                    name: "band_a.zerofilled_wav".into(),
                    path: wav,
                    label: Label::Corrupt { defect: "zero_filled".into() },
                },
            ]
        }));
        let (nylon, cello, items) = (master_of("nylon_guitar"), master_of("cello"), items_dir.clone());
        jobs.push(Box::new(move || {
            let holed = items.join("nylon_guitar.zerofilled.flac");
            std::fs::copy(&nylon, &holed).unwrap();
            let len = std::fs::metadata(&holed).unwrap().len() as usize;
            overwrite(&holed, len / 2, 256 * 1024, 0);
            let garbage = items.join("garbage.flac");
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            let bytes: Vec<u8> = (0..300_000)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            std::fs::write(&garbage, bytes).unwrap();
            let no_md5 = items.join("cello.no_md5.flac");
            std::fs::copy(&cello, &no_md5).unwrap();
            overwrite(&no_md5, STREAMINFO_MD5.start, STREAMINFO_MD5.len(), 0);
            let silence = items.join("silence.flac");
            ffmpeg(&[
                "-f",
                "lavfi",
                "-i",
                "anullsrc=r=44100:cl=stereo",
                "-t",
                "20",
                "-sample_fmt",
                "s16",
                "-c:a",
                "flac",
                path_str(&silence),
            ]);
            vec![
                CorpusItem {
                    name: "nylon_guitar.zerofilled_flac".into(),
                    path: holed,
                    label: Label::Corrupt { defect: "zero_filled".into() },
                },
                CorpusItem {
                    name: "garbage".into(),
                    path: garbage,
                    label: Label::Corrupt { defect: "unreadable".into() },
                },
                CorpusItem { name: "cello.no_md5".into(), path: no_md5, label: Label::Clean { what: "no_md5".into() } },
                CorpusItem { name: "silence".into(), path: silence, label: Label::Clean { what: "silence".into() } },
            ]
        }));
        let (master, items) = (master_of("band_a"), items_dir.clone());
        jobs.push(Box::new(move || {
            let short = items.join("band_a.short.flac");
            ffmpeg(&["-i", path_str(&master), "-ss", "4", "-t", "1.5", "-c:a", "flac", path_str(&short)]);
            vec![CorpusItem {
                name: "band_a.short".into(),
                path: short,
                label: Label::Genuine { kind: "very_short".into() },
            }]
        }));
    }
    let items: Vec<CorpusItem> = jobs_in_parallel(jobs).into_iter().flatten().collect();
    let corpus = Corpus { dir: dir.clone(), items, source_secs: secs };
    std::fs::write(&manifest, serde_json::to_string_pretty(&corpus).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("work"));
    corpus
}

/// The verifier's answers on a corpus, counted against the labels.
#[derive(Debug, Default)]
pub struct Scores {
    /// Genuine or clean items called `suspect` (or `corrupt`): must stay empty.
    pub false_alarms: Vec<String>,
    /// Detectable fakes from sources of at most 256 kbit/s: (called suspect, total).
    pub detectable_up_to_256: (usize, usize),
    /// Detectable 320 kbit/s fakes.
    pub detectable_320: (usize, usize),
    /// Transparent fakes: reported, not gated.
    pub transparent: (usize, usize),
    /// Detectable fakes not called suspect, with what was said.
    pub missed: Vec<String>,
    /// Upsampled or padded items not flagged, and items flagged that are neither.
    pub flag_errors: Vec<String>,
    /// Upsampled and padded items flagged: (flagged, total).
    pub flagged: (usize, usize),
    /// Damaged items not called corrupt with a reason naming the defect.
    pub integrity_errors: Vec<String>,
}

/// Counts `reports` (in corpus order) against the labels.
pub fn score(corpus: &Corpus, reports: &[downloader2::models::verification::FileVerification]) -> Scores {
    use downloader2::models::verification::Verdict;
    let mut scores = Scores::default();
    for (item, report) in corpus.items.iter().zip(reports) {
        let said = format!("{}: {} ({})", item.name, report.verdict.as_str(), report.reason);
        match &item.label {
            Label::Genuine { .. } | Label::Clean { .. } => {
                if matches!(report.verdict, Verdict::Suspect | Verdict::Corrupt) {
                    scores.false_alarms.push(said.clone());
                }
            }
            Label::Fake { kbps, detectable, .. } => {
                let hit = usize::from(report.verdict == Verdict::Suspect);
                let bucket = match (detectable, *kbps > 256) {
                    (false, _) => &mut scores.transparent,
                    (true, false) => &mut scores.detectable_up_to_256,
                    (true, true) => &mut scores.detectable_320,
                };
                bucket.0 += hit;
                bucket.1 += 1;
                if *detectable && hit == 0 {
                    scores.missed.push(said.clone());
                }
            }
            Label::Upsampled { .. } => {
                scores.flagged.1 += 1;
                if report.upsampled {
                    scores.flagged.0 += 1;
                } else {
                    scores.flag_errors.push(format!("{said}: upsampled not flagged"));
                }
            }
            Label::Padded { .. } => {
                scores.flagged.1 += 1;
                if report.padded_bits == 8 {
                    scores.flagged.0 += 1;
                } else {
                    scores.flag_errors.push(format!("{said}: padded_bits {} (expected 8)", report.padded_bits));
                }
            }
            Label::Corrupt { defect } => {
                let named = match defect.as_str() {
                    "md5" => report.reason.contains("MD5"),
                    "truncated" => report.reason.contains("missing") || report.reason.contains("ends early"),
                    "zero_filled" => {
                        report.reason.contains("zero-filled")
                            || report.reason.contains("damaged")
                            || report.reason.contains("missing")
                    }
                    _ => report.reason.contains("unreadable"),
                };
                if report.verdict != Verdict::Corrupt || !named {
                    scores.integrity_errors.push(said.clone());
                }
            }
        }
        let neither = !matches!(item.label, Label::Upsampled { .. } | Label::Padded { .. } | Label::Corrupt { .. });
        if neither && (report.upsampled || report.padded_bits > 0) {
            scores
                .flag_errors
                .push(format!("{said}: flagged upsampled={} padded_bits={}", report.upsampled, report.padded_bits));
        }
    }
    scores
}

/// A confusion table per source kind: rows are what the item is, columns what the verifier said.
pub fn confusion_table(corpus: &Corpus, reports: &[downloader2::models::verification::FileVerification]) -> String {
    use std::collections::BTreeMap;
    let mut rows: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    for (item, report) in corpus.items.iter().zip(reports) {
        let row = match &item.label {
            Label::Genuine { kind } => format!("genuine {kind}"),
            Label::Fake { source_kind, kbps, detectable, .. } => format!(
                "fake from {source_kind}, {} kbit/s, {}",
                if *kbps > 256 { "320" } else { "<=256" },
                if *detectable { "detectable" } else { "transparent" }
            ),
            Label::Upsampled { .. } => "upsampled".to_string(),
            Label::Padded { .. } => "padded 16-in-24".to_string(),
            Label::Corrupt { defect } => format!("corrupt: {defect}"),
            Label::Clean { what } => format!("clean: {what}"),
        };
        let column = match report.verdict.as_str() {
            "genuine" => 0,
            "unknown" => 1,
            "suspect" => 2,
            _ => 3,
        };
        rows.entry(row).or_default()[column] += 1;
    }
    let mut out =
        format!("{:<48} {:>8} {:>8} {:>8} {:>8}\n", "item \\ verdict", "genuine", "unknown", "suspect", "corrupt");
    for (row, counts) in rows {
        out.push_str(&format!("{row:<48} {:>8} {:>8} {:>8} {:>8}\n", counts[0], counts[1], counts[2], counts[3]));
    }
    out
}
