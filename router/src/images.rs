//! Images in requests: `data:` URLs and base64 blocks are decoded in translation; http(s) URLs
//! are fetched by the router before the request goes to a worker, with a size cap and a time
//! limit, so workers never reach out to the internet on a caller's behalf.

use std::time::Duration;

use auxot_common::chat::{ChatRequest, Image, Part};
use auxot_common::error::{ErrorKind, RemoteError};
use base64::Engine as _;
use futures::StreamExt as _;

/// Largest image accepted, decoded.
pub const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;
/// Time allowed to fetch one image by URL.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// An image to fetch and put at `messages[message].content[part]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingImage {
    pub message: usize,
    pub part: usize,
    pub url: String,
}

/// Stands in for an image until it is fetched.
pub fn placeholder() -> Image {
    Image {
        media_type: String::new(),
        data: Vec::new(),
    }
}

/// Decodes standard (or URL-safe) base64 image data.
pub fn decode_base64(media_type: &str, data: &str) -> Result<Image, RemoteError> {
    let cleaned: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&cleaned)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&cleaned))
        .map_err(|e| RemoteError::invalid(format!("image data is not valid base64: {e}")))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(RemoteError::invalid(format!(
            "image is {} bytes; the limit is {MAX_IMAGE_BYTES}",
            bytes.len()
        )));
    }
    Ok(Image {
        media_type: media_type.to_string(),
        data: bytes,
    })
}

/// `Some` for a `data:` URL (decoded or the reason it is bad), `None` for anything else.
pub fn parse_data_url(url: &str) -> Option<Result<Image, RemoteError>> {
    let rest = url.strip_prefix("data:")?;
    Some((|| {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| RemoteError::invalid("data URL has no `,` before its data"))?;
        let media_type = meta.strip_suffix(";base64").ok_or_else(|| {
            RemoteError::invalid("data URL must be base64 (`data:image/png;base64,...`)")
        })?;
        if !media_type.starts_with("image/") {
            return Err(RemoteError::invalid(format!(
                "data URL type `{media_type}` is not an image"
            )));
        }
        decode_base64(media_type, data)
    })())
}

/// Whether `url` is something the router will fetch.
pub fn check_fetchable(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => Ok(()),
        other => Err(format!(
            "scheme `{other}` is not supported; use https, http or a data: URL"
        )),
    }
}

async fn fetch_one(client: &reqwest::Client, url: &str) -> Result<Image, RemoteError> {
    let upstream = |message: String| RemoteError::new(ErrorKind::InvalidRequest, message);
    let response = client
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| upstream(format!("could not fetch image {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(upstream(format!(
            "fetching image {url} returned HTTP {}",
            response.status()
        )));
    }
    let media_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .unwrap_or_default();
    if let Some(len) = response.content_length() {
        if len as usize > MAX_IMAGE_BYTES {
            return Err(upstream(format!(
                "image {url} is {len} bytes; the limit is {MAX_IMAGE_BYTES}"
            )));
        }
    }
    let mut data = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| upstream(format!("reading image {url}: {e}")))?;
        if data.len() + chunk.len() > MAX_IMAGE_BYTES {
            return Err(upstream(format!(
                "image {url} exceeds the {MAX_IMAGE_BYTES}-byte limit"
            )));
        }
        data.extend_from_slice(&chunk);
    }
    let media_type = if media_type.starts_with("image/") {
        media_type
    } else {
        "image/unknown".to_string()
    };
    Ok(Image { media_type, data })
}

/// Fetches every pending image into `request`.
pub async fn fetch_all(
    client: &reqwest::Client,
    request: &mut ChatRequest,
    pending: Vec<PendingImage>,
) -> Result<(), RemoteError> {
    let fetched =
        futures::future::join_all(pending.iter().map(|p| fetch_one(client, &p.url))).await;
    for (slot, image) in pending.iter().zip(fetched) {
        let image = image?;
        if let Some(Part::Image(target)) = request
            .messages
            .get_mut(slot.message)
            .and_then(|m| m.content.get_mut(slot.part))
        {
            *target = image;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls() {
        let image = parse_data_url("data:image/jpeg;base64,/9j/")
            .expect("data url")
            .expect("valid");
        assert_eq!(image.media_type, "image/jpeg");
        assert_eq!(image.data, vec![0xff, 0xd8, 0xff]);
        assert!(parse_data_url("https://x").is_none());
        assert!(parse_data_url("data:text/plain;base64,AAAA")
            .expect("data url")
            .is_err());
        assert!(parse_data_url("data:image/png,raw")
            .expect("data url")
            .is_err());
        assert!(parse_data_url("data:image/png;base64,@@@")
            .expect("data url")
            .is_err());
    }

    #[test]
    fn only_http_urls_are_fetched() {
        assert!(check_fetchable("https://example.com/a.png").is_ok());
        assert!(check_fetchable("file:///etc/passwd").is_err());
        assert!(check_fetchable("not a url").is_err());
    }
}

#[cfg(test)]
mod fetch_tests {
    use super::*;
    use auxot_common::chat::{Message, Role};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Serves one canned HTTP response per connection on loopback.
    async fn serve(content_type: &'static str, body: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                });
            }
        });
        format!("http://{addr}/image")
    }

    fn request_with_placeholder() -> ChatRequest {
        ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: vec![
                    Part::Text { text: "see".into() },
                    Part::Image(placeholder()),
                ],
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn fetched_images_land_where_they_were_referenced() {
        let url = serve("image/png; charset=binary", vec![1, 2, 3]).await;
        let mut request = request_with_placeholder();
        let pending = vec![PendingImage {
            message: 0,
            part: 1,
            url,
        }];
        fetch_all(&reqwest::Client::new(), &mut request, pending)
            .await
            .expect("fetch");
        assert_eq!(
            request.messages[0].content[1],
            Part::Image(Image {
                media_type: "image/png".into(),
                data: vec![1, 2, 3]
            })
        );
    }

    #[tokio::test]
    async fn oversized_and_unreachable_images_are_client_errors() {
        let url = serve("image/png", vec![0; MAX_IMAGE_BYTES + 1]).await;
        let mut request = request_with_placeholder();
        let err = fetch_all(
            &reqwest::Client::new(),
            &mut request,
            vec![PendingImage {
                message: 0,
                part: 1,
                url,
            }],
        )
        .await
        .expect_err("too large");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.contains("limit"), "{}", err.message);
        let dead = PendingImage {
            message: 0,
            part: 1,
            url: "http://127.0.0.1:1/x.png".into(),
        };
        let err = fetch_all(&reqwest::Client::new(), &mut request, vec![dead])
            .await
            .expect_err("unreachable");
        assert!(
            err.message.contains("could not fetch image"),
            "{}",
            err.message
        );
    }
}
