//! A strict server-sent-events parser for checking what the router streams.

/// One SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Parses a complete SSE body. Comment lines (keep-alives) are skipped; every event must end
/// with a blank line.
pub fn parse(body: &str) -> Result<Vec<SseEvent>, String> {
    let mut events = Vec::new();
    let mut event = None;
    let mut data: Vec<String> = Vec::new();
    let mut open = false;
    for line in body.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else {
            return Err(format!("stream ended inside a line: {line:?}"));
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if open {
                events.push(SseEvent {
                    event: event.take(),
                    data: data.join("\n"),
                });
                data.clear();
                open = false;
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed line {line:?}"))?;
        let value = value.strip_prefix(' ').unwrap_or(value);
        open = true;
        match field {
            "event" => event = Some(value.to_string()),
            "data" => data.push(value.to_string()),
            "id" | "retry" => {}
            other => return Err(format!("unknown field {other:?}")),
        }
    }
    if open {
        return Err("stream ended inside an event".into());
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_and_skips_comments() {
        let body = ":keep-alive\n\nevent: ping\ndata: {}\n\ndata: [DONE]\n\n";
        let events = parse(body).expect("parse");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event.as_deref(), Some("ping"));
        assert_eq!(events[1].data, "[DONE]");
        assert!(parse("data: x\n").is_err());
    }
}
