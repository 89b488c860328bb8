//! The audio verifier's accuracy on the generated corpus (`support::verify_corpus`): no false alarm on genuine
//! lossless material of any kind, the detectable fakes found (>= 95 % from sources up to 256 kbit/s, >= 70 % at
//! 320), every upsampled and padded file flagged and nothing else, every integrity failure named, silence and a
//! FLAC without an MD5 never called corrupt, exact and near duplicates found among distinct but similar tracks.

use downloader2::models::verification::Verdict;
use downloader2::verifier::{verify_set, FileToVerify, VerifierSettings};

use crate::support::verify_corpus::{confusion_table, corpus, score, CorpusSize, Label};

fn share(counts: (usize, usize)) -> f64 {
    if counts.1 == 0 {
        1.0
    } else {
        counts.0 as f64 / counts.1 as f64
    }
}

#[test]
fn verifier_accuracy_on_the_generated_corpus() {
    let corpus = corpus(CorpusSize::Test);
    let files: Vec<FileToVerify> =
        corpus.items.iter().map(|item| FileToVerify { path: item.path.clone(), shown: item.name.clone() }).collect();
    // The corpus holds many versions of the same music by design; duplicates have their own test.
    let settings = VerifierSettings { check_duplicates: false, ..VerifierSettings::default() };
    let set = verify_set(&files, &settings, 2, &|| false).expect("not cancelled");
    assert_eq!(set.files.len(), corpus.items.len());
    println!("{}", confusion_table(&corpus, &set.files));
    let scores = score(&corpus, &set.files);
    println!("{scores:#?}");
    let detectable =
        corpus.items.iter().filter(|item| matches!(item.label, Label::Fake { detectable: true, .. })).count();
    assert!(detectable >= 30, "the corpus must hold enough detectable fakes to measure anything: {detectable}");
    assert!(scores.false_alarms.is_empty(), "false alarms on genuine material: {:#?}", scores.false_alarms);
    assert!(
        share(scores.detectable_up_to_256) >= 0.95,
        "detectable fakes up to 256 kbit/s found: {:?}; missed: {:#?}",
        scores.detectable_up_to_256,
        scores.missed
    );
    assert!(share(scores.detectable_320) >= 0.70, "detectable 320 kbit/s fakes found: {:?}", scores.detectable_320);
    assert!(scores.flag_errors.is_empty(), "{:#?}", scores.flag_errors);
    assert!(scores.flagged.1 >= 5 && scores.flagged.0 == scores.flagged.1);
    assert!(scores.integrity_errors.is_empty(), "{:#?}", scores.integrity_errors);
    // The flipped bit is found by the MD5 alone: every frame decodes.
    let flipped = &set.files[corpus.items.iter().position(|item| item.name == "band_a.bitflip").unwrap()];
    assert_eq!(flipped.decode_errors, 0, "{flipped:?}");
    assert_eq!(flipped.md5, downloader2::models::verification::Md5Check::Mismatch);
    // A suspect verdict carries its evidence.
    for report in set.files.iter().filter(|report| report.verdict == Verdict::Suspect) {
        let evidence = report.spectrum.as_ref().expect("suspect without evidence");
        assert!(report.cutoff_hz.is_some() && evidence.drop_db > 0.0 && report.confidence > 0.5, "{report:?}");
    }
}

#[test]
fn exact_and_near_duplicates_are_found_among_similar_tracks() {
    let corpus = corpus(CorpusSize::Test);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("band_a copy.flac");
    std::fs::copy(&corpus.item("band_a.genuine").path, &copy).unwrap();
    // Distinct tracks of one "album" (the same instruments, other notes), an exact copy and two lossy passes.
    let names = [
        "band_a.genuine",
        "band_b.genuine",
        "soft_top.genuine",
        "quiet_band.genuine",
        "cello.genuine",
        "flute.genuine",
        "nylon_guitar.genuine",
        "band_b.aac_256",
        "nylon_guitar.opus_160",
        "silence",
    ];
    let mut files: Vec<FileToVerify> = names
        .iter()
        .map(|name| FileToVerify { path: corpus.item(name).path.clone(), shown: name.to_string() })
        .collect();
    files.push(FileToVerify { path: copy, shown: "copy".into() });
    let set = verify_set(&files, &VerifierSettings::default(), 2, &|| false).unwrap();
    let duplicate_of = |shown: &str| set.files.iter().find(|file| file.path == shown).unwrap().duplicate_of.clone();
    assert_eq!(duplicate_of("copy").as_deref(), Some("band_a.genuine"));
    assert_eq!(duplicate_of("band_b.aac_256").as_deref(), Some("band_b.genuine"));
    assert_eq!(duplicate_of("nylon_guitar.opus_160").as_deref(), Some("nylon_guitar.genuine"));
    for name in names.iter().filter(|name| !name.contains('_') || name.ends_with("genuine") || **name == "silence") {
        assert_eq!(duplicate_of(name), None, "{name} is no duplicate");
    }
    let album = set.album.expect("album loudness");
    assert!(album.loudness_lufs < -5.0 && album.loudness_lufs > -60.0, "{album:?}");
}
