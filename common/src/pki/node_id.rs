//! Node ids: the names certificates carry and TLS checks, so they must be DNS labels.

/// Whether a node id can be a certificate's DNS name and a TLS server name.
pub fn is_valid_node_id(node_id: &str) -> bool {
    !node_id.is_empty()
        && node_id.len() <= 63
        && node_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !node_id.starts_with('-')
        && !node_id.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_must_be_dns_labels() {
        assert!(is_valid_node_id("worker-gpu1-7948"));
        assert!(!is_valid_node_id("Worker"));
        assert!(!is_valid_node_id("a.b"));
        assert!(!is_valid_node_id("-a"));
        assert!(!is_valid_node_id(""));
    }
}
