//! Release-title parsing (owned by the matcher work; placeholder).
