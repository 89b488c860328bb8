//! Benchmark: parsing a realistic Jackett aggregate answer (200 items, ~400 KB of XML: magnets with a
//! tracker list, `/dl/` proxy links, every attr) into candidates. Prints the median of many runs; the target is
//! < 20 ms. A plain `main` (harness = false); it touches no network and no file.

use std::time::{Duration, Instant};

use downloader2::searcher::candidates::candidate_from_item;
use downloader2::searcher::torznab_xml::{parse_document, TorznabDocument};

const TRACKERS: &str = "&amp;tr=udp%3A%2F%2Ftracker.opentrackr.org%3A1337%2Fannounce&amp;tr=udp%3A%2F%2Fopen.demonii.com%3A1337%2Fannounce&amp;tr=udp%3A%2F%2Fopen.stealth.si%3A80%2Fannounce&amp;tr=udp%3A%2F%2Ftracker.torrent.eu.org%3A451%2Fannounce&amp;tr=udp%3A%2F%2Fvito-tracker.space%3A6969%2Fannounce";

fn item(i: usize) -> String {
    let title = format!("Artist {i} - Album Number {i} ({}) [FLAC 24bit] {{Deluxe Edition}}", 1970 + i % 50);
    let dn: String = title.replace(' ', "+");
    let hash = format!("{:040X}", i * 7_919 + 1);
    if i % 2 == 0 {
        let magnet = format!("magnet:?xt=urn:btih:{hash}&amp;dn={dn}{TRACKERS}");
        format!(
            r#"    <item>
      <title>{title}</title>
      <guid>{magnet}</guid>
      <jackettindexer id="thepiratebay">The Pirate Bay</jackettindexer>
      <type>public</type>
      <comments>https://thepiratebay.org/description.php?id={i}</comments>
      <pubDate>Wed, 15 Mar 2023 21:04:11 +0000</pubDate>
      <size>{size}</size>
      <files>14</files>
      <description>Uploader: lossless4ever&lt;br&gt;{title}</description>
      <link>{magnet}</link>
      <category>3040</category>
      <category>100104</category>
      <enclosure url="{magnet}" length="{size}" type="application/x-bittorrent" />
      <torznab:attr name="category" value="3040" />
      <torznab:attr name="category" value="100104" />
      <torznab:attr name="seeders" value="{seeders}" />
      <torznab:attr name="peers" value="{peers}" />
      <torznab:attr name="infohash" value="{hash}" />
      <torznab:attr name="magneturl" value="{magnet}" />
      <torznab:attr name="downloadvolumefactor" value="0" />
      <torznab:attr name="uploadvolumefactor" value="1" />
    </item>
"#,
            size = 300_000_000 + i,
            seeders = i % 300,
            peers = i % 300 + 7,
        )
    } else {
        let link = format!(
            "http://127.0.0.1:9117/dl/orpheus/?jackett_apikey=u3bq4t1m0e9v2y8k7w5r6p1s0n3c4x2z&amp;path=Q2ZESjhGTHlKbVdtREJMU2lSaGRsUTdvZ1RZSkZtOXJFVDBYald3UDA1QWY4am1ob0pYeUQ1T1ZaUXo1T0F1TzJ5SktheVNLSHBKT2o5Q3VMaHFVa3FNd1h4aU10aENRRDU0MGY2NkliY1pRZDVYc2RGeE1QOHN1c3NjLUZKTk1objdnVjdweVNadjZFaDZEYXlyQlZ5YnVmV3NLOXFzVHc0NlN5dURSVUZleFdaaF9sTXgwRWRjWDhVVjVzcW9R{i}&amp;file={dn}"
        );
        format!(
            r#"    <item>
      <title>{title}</title>
      <guid>https://orpheus.network/torrents.php?torrentid={i}</guid>
      <jackettindexer id="orpheus">Orpheus</jackettindexer>
      <type>private</type>
      <comments>https://orpheus.network/torrents.php?torrentid={i}</comments>
      <pubDate>Sun, 08 Aug 2021 19:21:37 +0000</pubDate>
      <size>{size}</size>
      <files>14</files>
      <grabs>1875</grabs>
      <description>Tags: trip.hop, electronic
</description>
      <link>{link}</link>
      <category>3000</category>
      <category>100001</category>
      <enclosure url="{link}" length="{size}" type="application/x-bittorrent" />
      <torznab:attr name="category" value="3000" />
      <torznab:attr name="category" value="100001" />
      <torznab:attr name="genre" value="trip.hop, electronic" />
      <torznab:attr name="seeders" value="{seeders}" />
      <torznab:attr name="peers" value="{peers}" />
      <torznab:attr name="coverurl" value="{link}" />
      <torznab:attr name="minimumratio" value="1" />
      <torznab:attr name="minimumseedtime" value="172800" />
      <torznab:attr name="downloadvolumefactor" value="1" />
      <torznab:attr name="uploadvolumefactor" value="1" />
    </item>
"#,
            size = 500_000_000 + i,
            seeders = i % 200,
            peers = i % 200 + 3,
        )
    }
}

fn feed(items: usize) -> String {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:torznab="http://torznab.com/schemas/2015/feed">
  <channel>
    <atom:link href="http://127.0.0.1:9117/" rel="self" type="application/rss+xml" />
    <title>AggregateSearch</title>
    <description>This feed includes all configured trackers</description>
    <link>http://127.0.0.1/</link>
    <language>en-US</language>
    <category>search</category>
"#,
    );
    for i in 0..items {
        xml.push_str(&item(i));
    }
    xml.push_str("  </channel>\n</rss>\n");
    xml
}

fn parse_into_candidates(xml: &str) -> usize {
    match parse_document(xml) {
        Ok(TorznabDocument::Results(items)) => items.into_iter().filter_map(|it| candidate_from_item(it, None)).count(),
        other => panic!("not a results feed: {other:?}"),
    }
}

fn main() {
    let xml = feed(200);
    assert_eq!(parse_into_candidates(&xml), 200, "every item becomes a candidate");
    for _ in 0..5 {
        parse_into_candidates(&xml);
    }
    let mut samples: Vec<Duration> = (0..101)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(parse_into_candidates(std::hint::black_box(&xml)));
            start.elapsed()
        })
        .collect();
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "torznab_parse: 200 items, {} KB of XML -> candidates: median {:.3} ms (min {:.3} ms, max {:.3} ms, 101 runs; target < 20 ms)",
        xml.len() / 1024,
        median.as_secs_f64() * 1000.0,
        samples[0].as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0,
    );
}
