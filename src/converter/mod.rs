//! Conversion: ffmpeg transcoding, tags, cover art, CUE splitting, ffprobe validation (placeholder).
