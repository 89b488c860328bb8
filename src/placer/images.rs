//! Which torrent file becomes which ticket image: the matcher owns the rule (`matcher::wanted`), so the files the
//! download stage fetches and the pictures the converter and placer use are chosen by the same function. Re-exported
//! here for the placer's and converter's callers.

pub use crate::matcher::wanted::choose_image_file;
