//! The crate's layering, written down once and checked by a test: every top-level module has a layer, and a module
//! may only name (`crate::x`, `crate::{x, y::z}`, or `super::...` chains that climb to the crate root) modules of
//! layers BELOW its own. Two modules of the same layer never import each other, with one listed exception
//! (`converter` -> `placer`: the converter picks the torrent image the placer places). So no import loop between
//! modules can exist, and a change that would create one fails here, naming the file and the import.
//!
//! The order (lowest first; docs/ARCHITECTURE.md and DESIGN.md section 2 describe it in words):
//!
//! | layer | modules | may use |
//! |---|---|---|
//! | 0 base data | `models` | nothing of the crate |
//! | 1 base services | `config`, `events`, `metrics`, `logging` | models |
//! | 2 programs | `process` | the above |
//! | 3 pure domain | `release` | the above |
//! | 4 pure domain | `matcher` | the above |
//! | 5 clients | `searcher`, `torrent_client`, `converter`, `placer`, `llm`, `notify` | the above, never each other |
//! | 6 persistence | `queue` | the above |
//! | 7 commands and queries | `app` | the above |
//! | 8 pipeline | `processor` | the above |
//! | 9 HTTP | `api` | the above |
//! | 10 wiring | `server` | everything |
//!
//! A second test keeps the API on `App`: no file under `src/api/` touches the store (`app.store`); it reads and
//! writes through `App`'s commands and queries.
//!
//! This file is compiled only for tests; it reads `src/` at test time and imports nothing of the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module and its layer (see the table above). A new module must be placed here.
const LAYERS: &[(&str, u8)] = &[
    ("models", 0),
    ("config", 1),
    ("events", 1),
    ("metrics", 1),
    ("logging", 1),
    ("process", 2),
    ("release", 3),
    ("matcher", 4),
    ("searcher", 5),
    ("torrent_client", 5),
    ("converter", 5),
    ("placer", 5),
    ("llm", 5),
    ("notify", 5),
    ("verifier", 5),
    ("queue", 6),
    ("app", 7),
    ("processor", 8),
    ("api", 9),
    ("server", 10),
    ("layering", 11),
];

/// Imports between two modules of the same layer that are allowed (importer, imported).
const SAME_LAYER_EXCEPTIONS: &[(&str, &str)] = &[("converter", "placer")];

/// One import that breaks the layering.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    /// The file, relative to `src/`.
    file: String,
    /// The importing top-level module.
    module: String,
    /// The imported top-level module.
    imported: String,
    /// Why it is refused.
    why: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "src/{}: `{}` imports `crate::{}`: {}", self.file, self.module, self.imported, self.why)
    }
}

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|(_, layer)| *layer)
}

/// The source without `//` comments (docs may mention any module), so only code counts.
fn without_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifier at the start of `text` (after whitespace), if any.
fn leading_identifier(text: &str) -> Option<&str> {
    let text = text.trim_start();
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len());
    let ident = &text[..end];
    (!ident.is_empty() && !ident.starts_with(|c: char| c.is_ascii_digit())).then_some(ident)
}

/// The first path segments of a `{a, b::c, d::{e, f}}` group (the text after the opening brace), up to its
/// matching closing brace.
fn group_heads(after_brace: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut item_start = 0usize;
    for (at, c) in after_brace.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                heads.extend(leading_identifier(&after_brace[item_start..at]));
                return heads;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.extend(leading_identifier(&after_brace[item_start..at]));
                item_start = at + 1;
            }
            _ => {}
        }
    }
    heads
}

/// Whether the byte before `at` ends an identifier or path (so `foo_crate::x` or `a::crate::x` is not `crate::x`).
fn is_path_start(code: &str, at: usize) -> bool {
    !code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$')
}

/// The top-level modules `code` refers to: `crate::x`, each head of `crate::{...}`, and `super::` chains of at
/// least `depth` links (the file's depth below the crate root) followed by a top-level module's name.
fn referenced_modules(code: &str, depth: usize) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        if !is_path_start(code, at) {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.trim_start().strip_prefix('{') {
            found.extend(group_heads(group).into_iter().map(str::to_string));
        } else if let Some(ident) = leading_identifier(rest) {
            found.insert(ident.to_string());
        }
    }
    for (at, _) in code.match_indices("super::") {
        if !is_path_start(code, at) {
            continue;
        }
        let mut rest = &code[at..];
        let mut links = 0usize;
        while let Some(next) = rest.strip_prefix("super::") {
            links += 1;
            rest = next.trim_start();
        }
        if links < depth {
            continue;
        }
        // Inside an inline module (`mod tests`) the chain needs one more link to reach the crate root, so only a
        // name that IS a top-level module counts (a submodule's name never is one).
        let heads: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group_heads(group),
            None => leading_identifier(rest).into_iter().collect(),
        };
        found.extend(heads.into_iter().filter(|head| layer_of(head).is_some()).map(str::to_string));
    }
    found.retain(|name| name != "self" && name != "super" && name != "crate");
    found
}

/// The violations of one file of `module`, `depth` module levels below the crate root (`src/a.rs` and
/// `src/a/mod.rs`: 1, `src/a/b.rs`: 2).
fn check_file(file: &str, module: &str, depth: usize, source: &str) -> Vec<Violation> {
    let violation = |imported: &str, why: String| Violation {
        file: file.to_string(),
        module: module.to_string(),
        imported: imported.to_string(),
        why,
    };
    let Some(own) = layer_of(module) else {
        return vec![violation(module, format!("module `{module}` has no layer: add it to LAYERS in src/layering.rs"))];
    };
    let mut violations = Vec::new();
    for imported in referenced_modules(&without_comments(source), depth) {
        if imported == module {
            continue;
        }
        match layer_of(&imported) {
            None => violations.push(violation(&imported, "not a top-level module with a layer".into())),
            Some(theirs) if theirs > own => {
                violations.push(violation(&imported, format!("layer {theirs} is above layer {own}")))
            }
            Some(theirs) if theirs == own && !SAME_LAYER_EXCEPTIONS.contains(&(module, imported.as_str())) => {
                violations.push(violation(&imported, format!("both are in layer {own}, which never import each other")))
            }
            Some(_) => {}
        }
    }
    violations
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The crate's module files: (path relative to `src/`, top-level module, depth, source). The crate root files
/// (`lib.rs`, `main.rs`) are not part of any layer.
fn module_files(src: &Path) -> Vec<(String, String, usize, String)> {
    let mut paths = Vec::new();
    rust_files(src, &mut paths);
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let Ok(relative) = path.strip_prefix(src) else { continue };
        let relative = relative.to_string_lossy().to_string();
        if relative == "lib.rs" || relative == "main.rs" {
            continue;
        }
        let without_ext = relative.trim_end_matches(".rs");
        let mut segments: Vec<&str> = without_ext.split('/').collect();
        if segments.last() == Some(&"mod") {
            segments.pop();
        }
        let module = segments.first().copied().unwrap_or_default().to_string();
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        files.push((relative.clone(), module, segments.len(), source));
    }
    files
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_imports_only_from_layers_below_its_own() {
    let files = module_files(&src_dir());
    assert!(files.len() > 50, "src/ was not found or is nearly empty: {} files", files.len());
    let violations: Vec<String> = files
        .iter()
        .flat_map(|(file, module, depth, source)| check_file(file, module, *depth, source))
        .map(|violation| violation.to_string())
        .collect();
    assert!(violations.is_empty(), "imports against the layering:\n{}", violations.join("\n"));
}

#[test]
fn every_module_of_lib_rs_has_a_layer_and_every_layer_entry_is_a_module() {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let rest = line.strip_prefix("pub mod ").or_else(|| line.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim())
        })
        .collect();
    let placed: BTreeSet<&str> = LAYERS.iter().map(|(name, _)| *name).collect();
    assert_eq!(declared, placed, "lib.rs's modules and LAYERS differ");
}

#[test]
fn the_api_reads_and_writes_through_app_never_the_store() {
    let mut offenders = Vec::new();
    for (file, module, _, source) in module_files(&src_dir()) {
        if module != "api" {
            continue;
        }
        for (number, line) in without_comments(&source).lines().enumerate() {
            if line.contains(".store.") || line.contains("app.store") {
                offenders.push(format!("src/{file}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "the API must use App's commands and queries:\n{}", offenders.join("\n"));
}

#[test]
fn there_is_no_import_loop_between_modules() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, module, depth, source) in module_files(&src_dir()) {
        let imported = referenced_modules(&without_comments(&source), depth);
        edges.entry(module.clone()).or_default().extend(imported.into_iter().filter(|m| *m != module));
    }
    // Depth-first search for a back edge; the path found is reported.
    fn visit(
        module: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        on_path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = on_path.iter().position(|m| m == module) {
            let mut cycle = on_path[at..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        on_path.push(module.to_string());
        for next in edges.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, on_path, done) {
                return Some(cycle);
            }
        }
        on_path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for module in edges.keys() {
        let cycle = visit(module, &edges, &mut Vec::new(), &mut done);
        assert!(cycle.is_none(), "import loop: {}", cycle.unwrap_or_default().join(" -> "));
    }
}

#[test]
fn the_checker_refuses_upward_sideways_grouped_and_super_imports() {
    // A plain upward import.
    let up = check_file("models/x.rs", "models", 2, "use crate::queue::Store;\n");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].imported, "queue");
    assert!(up[0].to_string().contains("src/models/x.rs"), "{}", up[0]);
    // One upward name hidden in a nested group.
    let grouped = check_file(
        "matcher/a.rs",
        "matcher",
        2,
        "use crate::{\n    models::{Ticket, TorrentCandidate},\n    app::App,\n};",
    );
    assert_eq!(grouped.iter().map(|v| v.imported.as_str()).collect::<Vec<_>>(), ["app"]);
    // Two clients never import each other; converter -> placer is the one exception.
    assert_eq!(check_file("searcher/b.rs", "searcher", 2, "fn f() { crate::llm::call(); }").len(), 1);
    assert!(check_file("converter/c.rs", "converter", 2, "use crate::placer::images;").is_empty());
    assert_eq!(check_file("placer/c.rs", "placer", 2, "use crate::converter::Converter;").len(), 1);
    // A `super::` chain that climbs to the crate root, also from inside `mod tests`.
    assert_eq!(check_file("queue/d.rs", "queue", 2, "use super::super::processor::Scheduler;").len(), 1);
    assert_eq!(check_file("queue/d.rs", "queue", 2, "mod tests { use super::super::super::api::router; }").len(), 1);
    // Intra-module paths, lower layers and comments are fine.
    let fine = "use super::store::Store;\nuse crate::queue::x;\nuse crate::models::Ticket; // crate::api::router\n/// [`crate::app::App`]\n";
    assert!(check_file("queue/e.rs", "queue", 2, fine).is_empty(), "{:?}", check_file("queue/e.rs", "queue", 2, fine));
    // A module nobody placed is reported.
    assert_eq!(check_file("newthing.rs", "newthing", 1, "").len(), 1);
    // Not paths of this crate.
    assert!(referenced_modules("use other_crate::api; let x = a::crate::api;", 1).is_empty());
}
