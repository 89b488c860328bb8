//! The torrent client: qBittorrent's WebUI API v2 and the managed qbittorrent-nox (placeholder).
