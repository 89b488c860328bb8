//! Realistic music for tests, made at test time: a standard MIDI file composed here (piano chords, fingered bass,
//! a string pad, a lead melody and a General MIDI drum kit on channel 10 with kick, snare, closed and open hi-hats,
//! ride and crash cymbals, so the audio has real high-frequency content and dynamics) and rendered to WAV by
//! `fluidsynth` with the `fluid-soundfont-gm` soundfont. Deterministic: the same spec gives the same notes.
//! Nothing is committed as a binary; a missing program fails with the package to install.

#![allow(dead_code)] // a reusable generator: not every test reads every field

use std::path::Path;
use std::process::Command;

use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

/// The General MIDI soundfont of Debian's `fluid-soundfont-gm`.
pub const SOUNDFONT: &str = "/usr/share/sounds/sf2/FluidR3_GM.sf2";
const TICKS_PER_QUARTER: u16 = 480;
/// GM drum channel (channel 10, zero-based 9).
const DRUM_CHANNEL: u8 = 9;

/// What to compose.
#[derive(Debug, Clone, Copy)]
pub struct MusicSpec {
    /// Whole bars of 4/4; at `tempo_bpm` one bar lasts `240 / tempo_bpm` seconds.
    pub bars: u32,
    pub tempo_bpm: u32,
    /// Varies the melody and the drum fills.
    pub seed: u64,
}

impl MusicSpec {
    /// The length of the notes in seconds (the render adds the instruments' release tail).
    pub fn secs(&self) -> f64 {
        f64::from(self.bars) * 240.0 / f64::from(self.tempo_bpm)
    }
}

/// A small deterministic generator (numerical recipes' LCG): enough for melodies.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

/// Notes of one MIDI channel as (start tick, end tick, key, velocity).
#[derive(Default)]
struct Part {
    program: Option<u8>,
    notes: Vec<(u32, u32, u8, u8)>,
}

impl Part {
    fn note(&mut self, start: u32, length: u32, key: u8, velocity: u8) {
        self.notes.push((start, start + length, key, velocity));
    }

    /// The part as a MIDI track on `channel`: program change, notes (note-offs before note-ons at the same tick).
    fn into_track(self, channel: u8) -> Vec<TrackEvent<'static>> {
        let channel = u4::new(channel);
        let mut events: Vec<(u32, u8, TrackEventKind<'static>)> = Vec::new();
        if let Some(program) = self.program {
            let message = MidiMessage::ProgramChange { program: u7::new(program) };
            events.push((0, 0, TrackEventKind::Midi { channel, message }));
        }
        for (start, end, key, velocity) in self.notes {
            let on = MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(velocity) };
            let off = MidiMessage::NoteOff { key: u7::new(key), vel: u7::new(0) };
            events.push((start, 2, TrackEventKind::Midi { channel, message: on }));
            events.push((end, 1, TrackEventKind::Midi { channel, message: off }));
        }
        events.sort_by_key(|(tick, order, _)| (*tick, *order));
        let mut track = Vec::with_capacity(events.len() + 1);
        let mut last = 0;
        for (tick, _, kind) in events {
            track.push(TrackEvent { delta: u28::new(tick - last), kind });
            last = tick;
        }
        track.push(TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
        track
    }
}

/// Composes `spec` as a type-1 standard MIDI file at `path`.
pub fn write_midi(path: &Path, spec: MusicSpec) {
    let quarter = u32::from(TICKS_PER_QUARTER);
    let bar = 4 * quarter;
    let eighth = quarter / 2;
    // I - V - vi - IV in C major, then ii - V - I - I every fourth phrase.
    let progressions: [[u8; 4]; 2] = [[48, 43, 45, 41], [50, 43, 48, 48]];
    let minor = |root: u8| matches!(root % 12, 9 | 2);
    let mut rng = Lcg(spec.seed.wrapping_add(0x5eed));
    let mut piano = Part { program: Some(0), ..Part::default() };
    let mut bass = Part { program: Some(33), ..Part::default() };
    let mut strings = Part { program: Some(48), ..Part::default() };
    let mut lead = Part { program: Some(65), ..Part::default() };
    let mut drums = Part::default();
    for bar_idx in 0..spec.bars {
        let phrase = (bar_idx / 4) as usize;
        let root = progressions[usize::from(phrase % 4 == 3)][(bar_idx % 4) as usize];
        let third = if minor(root) { 3 } else { 4 };
        let chord = [root + 12, root + 12 + third, root + 19];
        let start = bar_idx * bar;
        // A quiet intro bar of strings only, then the band.
        strings.note(start, bar - 10, chord[0], 52);
        strings.note(start, bar - 10, chord[2] + 12, 48);
        if bar_idx == 0 {
            continue;
        }
        for half in 0..2 {
            for key in chord {
                piano.note(start + half * 2 * quarter, 2 * quarter - 20, key + 12, 64 + (half * 8) as u8);
            }
        }
        for beat in 0..4 {
            let key = if beat % 2 == 0 { root - 12 } else { root };
            bass.note(start + beat * quarter, quarter - 30, key, 90);
        }
        // Lead: eighths from the chord's scale, with rests.
        let scale = [0u8, 2, third, 5, 7, 9, 11, 12];
        for step in 0..8 {
            if rng.next(4) == 0 {
                continue;
            }
            let degree = scale[rng.next(scale.len() as u64) as usize];
            let length = if rng.next(3) == 0 { quarter } else { eighth };
            lead.note(start + step * eighth, length - 10, root + 24 + degree, 70 + rng.next(30) as u8);
        }
        // Drums: kick on 1 and 3, snare on 2 and 4, hi-hats (ride in every other eight-bar section), crash on
        // every phrase start, an open hi-hat and a snare fill at phrase ends.
        let ride_section = (bar_idx / 8) % 2 == 1;
        for beat in 0..4 {
            let at = start + beat * quarter;
            drums.note(at, eighth, if beat % 2 == 0 { 36 } else { 38 }, if beat % 2 == 0 { 110 } else { 96 });
        }
        for step in 0..8 {
            let cymbal = if ride_section { 51 } else { 42 };
            drums.note(start + step * eighth, eighth / 2, cymbal, if step % 2 == 0 { 90 } else { 70 });
        }
        if bar_idx % 4 == 0 {
            drums.note(start, quarter * 2, 49, 112);
        }
        if bar_idx % 4 == 3 {
            drums.note(start + 3 * quarter + eighth, eighth, 46, 96);
            for fill in 0..u32::try_from(rng.next(3)).unwrap_or(0) + 1 {
                drums.note(start + 3 * quarter + fill * (eighth / 2), eighth / 2, 38, 80);
            }
        }
    }
    let tempo_us = 60_000_000 / spec.tempo_bpm;
    let mut conductor =
        vec![TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(tempo_us))) }];
    conductor.push(TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
    let mut smf = Smf::new(Header::new(Format::Parallel, Timing::Metrical(u15::new(TICKS_PER_QUARTER))));
    smf.tracks.push(conductor);
    for (channel, part) in [(0, piano), (1, bass), (2, strings), (3, lead), (DRUM_CHANNEL, drums)] {
        smf.tracks.push(part.into_track(channel));
    }
    smf.save(path).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

/// Renders `midi` to a 16-bit stereo WAV at `rate_hz` with fluidsynth and the GM soundfont.
pub fn render_with_fluidsynth(midi: &Path, wav: &Path, rate_hz: u32) {
    assert!(
        Path::new(SOUNDFONT).is_file(),
        "{SOUNDFONT} missing: apt-get install fluid-soundfont-gm (scripts/install-deps.sh --for-tests)"
    );
    let output = Command::new("fluidsynth")
        .args(["-n", "-i", "-q", "-g", "0.6", "-r", &rate_hz.to_string(), "-T", "wav", "-F"])
        .arg(wav)
        .arg(SOUNDFONT)
        .arg(midi)
        .output()
        .unwrap_or_else(|err| panic!("cannot run fluidsynth ({err}): apt-get install fluidsynth fluid-soundfont-gm"));
    assert!(
        output.status.success() && wav.is_file(),
        "fluidsynth failed on {}: {}",
        midi.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}
