//! Images in requests: `data:` URLs and base64 blocks are decoded in translation; images given
//! by http(s) URL ([`Part::ImageUrl`]) are fetched by the router and replaced in place before the
//! request goes to a worker, with a size cap and a time limit, so workers never reach out to the
//! internet on a caller's behalf.

use std::time::Duration;

use std::net::SocketAddr;

use auxot_common::address_policy;
use auxot_common::chat::{ChatRequest, Image, Part};

use crate::error::ApiError;
use base64::Engine as _;
use futures::StreamExt as _;

/// Largest image accepted, decoded.
pub const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;
/// Images given by URL in one request.
pub const MAX_URL_IMAGES: usize = 16;
/// Bytes fetched for one request, all images together.
pub const MAX_FETCHED_BYTES: usize = 48 * 1024 * 1024;
/// Time allowed to fetch one image by URL.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Decodes standard (or URL-safe) base64 image data.
pub fn decode_base64(media_type: &str, data: &str) -> Result<Image, String> {
    let cleaned: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&cleaned)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&cleaned))
        .map_err(|e| format!("image data is not valid base64: {e}"))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(format!(
            "image is {} bytes; the limit is {MAX_IMAGE_BYTES}",
            bytes.len()
        ));
    }
    Ok(Image {
        media_type: media_type.to_string(),
        data: bytes,
    })
}

/// `Some` for a `data:` URL (decoded or the reason it is bad), `None` for anything else.
pub fn parse_data_url(url: &str) -> Option<Result<Image, String>> {
    let rest = url.strip_prefix("data:")?;
    Some((|| {
        let (meta, data) = rest
            .split_once(',')
            .ok_or("data URL has no `,` before its data")?;
        let media_type = meta
            .strip_suffix(";base64")
            .ok_or("data URL must be base64 (`data:image/png;base64,...`)")?;
        if !media_type.starts_with("image/") {
            return Err(format!("data URL type `{media_type}` is not an image"));
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

/// Where the router may fetch images from.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchPolicy {
    /// Allow loopback, private and link-local addresses (off: a caller could otherwise make the
    /// router probe its own network or a cloud metadata service).
    pub allow_private: bool,
}

/// The checked addresses of `url`'s host, and the host name to pin them to.
async fn resolve_checked(
    url: &url::Url,
    policy: FetchPolicy,
) -> Result<(String, Vec<SocketAddr>), ApiError> {
    let invalid = |message: String| ApiError::invalid(message);
    let port = url
        .port_or_known_default()
        .ok_or_else(|| invalid(format!("image URL {url} has no port")))?;
    let (host, addrs): (String, Vec<SocketAddr>) = match url.host() {
        Some(url::Host::Domain(name)) => {
            let addrs = tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| invalid(format!("could not fetch image {url}: {e}")))?
                .collect();
            (name.to_string(), addrs)
        }
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        None => return Err(invalid(format!("image URL {url} has no host"))),
    };
    if addrs.is_empty() {
        return Err(invalid(format!(
            "could not fetch image {url}: its host has no address"
        )));
    }
    if !policy.allow_private {
        for addr in &addrs {
            if let Some(why) = address_policy::refusal(addr.ip()) {
                return Err(invalid(format!(
                    "refusing to fetch image {url}: {why} addresses ({}) are not allowed (start the router with --allow-private-image-urls to permit)",
                    addr.ip()
                )));
            }
        }
    }
    Ok((host, addrs))
}

/// Fetches one image, connecting only to addresses the policy allows and following no
/// redirects (each hop would need the same check; a caller can give the final URL).
async fn fetch_one(url: &str, policy: FetchPolicy, budget: &mut usize) -> Result<Image, ApiError> {
    // A URL the router cannot fetch is the caller's to fix.
    let upstream = |message: String| ApiError::invalid(message);
    let parsed = url::Url::parse(url).map_err(|e| upstream(format!("image URL {url}: {e}")))?;
    let (host, addrs) = resolve_checked(&parsed, policy).await?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("auxot-router/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(FETCH_TIMEOUT)
        .resolve_to_addrs(&host, &addrs)
        .build()
        .map_err(|e| ApiError::internal(format!("building the image client: {e}")))?;
    let response = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| upstream(format!("could not fetch image {url}: {e}")))?;
    if response.status().is_redirection() {
        return Err(upstream(format!(
            "image URL {url} redirects; give the final URL of the image"
        )));
    }
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
    let limit = MAX_IMAGE_BYTES.min(*budget);
    if let Some(len) = response.content_length() {
        if len as usize > limit {
            return Err(upstream(format!(
                "image {url} is {len} bytes; the limit is {MAX_IMAGE_BYTES} per image and {MAX_FETCHED_BYTES} per request"
            )));
        }
    }
    let mut data = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| upstream(format!("reading image {url}: {e}")))?;
        if data.len() + chunk.len() > limit {
            return Err(upstream(format!(
                "image {url} exceeds the limit of {MAX_IMAGE_BYTES} bytes per image and {MAX_FETCHED_BYTES} per request"
            )));
        }
        data.extend_from_slice(&chunk);
    }
    *budget -= data.len();
    let media_type = if media_type.starts_with("image/") {
        media_type
    } else {
        "image/unknown".to_string()
    };
    Ok(Image { media_type, data })
}

/// Fetches every image given by URL in `request` and puts it in place of its URL, one after the
/// other within a per-request budget.
pub async fn resolve(policy: FetchPolicy, request: &mut ChatRequest) -> Result<(), ApiError> {
    let count = request
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .filter(|p| matches!(p, Part::ImageUrl { .. }))
        .count();
    if count > MAX_URL_IMAGES {
        return Err(ApiError::invalid(format!(
            "{count} images by URL; at most {MAX_URL_IMAGES} per request"
        )));
    }
    let mut budget = MAX_FETCHED_BYTES;
    for part in request.messages.iter_mut().flat_map(|m| &mut m.content) {
        if let Part::ImageUrl { url } = part {
            let image = fetch_one(url, policy, &mut budget).await?;
            *part = Part::Image(image);
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
    use crate::error::Fault;
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

    const LOOPBACK_ALLOWED: FetchPolicy = FetchPolicy {
        allow_private: true,
    };

    fn request_with(urls: &[&str]) -> ChatRequest {
        let mut content = vec![Part::Text { text: "see".into() }];
        content.extend(urls.iter().map(|url| Part::ImageUrl {
            url: url.to_string(),
        }));
        ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content,
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn private_addresses_are_refused_by_default() {
        let url = serve("image/png", vec![1]).await;
        let err = resolve(FetchPolicy::default(), &mut request_with(&[&url]))
            .await
            .expect_err("loopback refused");
        assert!(err.message.contains("loopback"), "{}", err.message);
        let metadata = "http://169.254.169.254/latest/meta-data";
        let err = resolve(FetchPolicy::default(), &mut request_with(&[metadata]))
            .await
            .expect_err("link-local refused");
        assert!(err.message.contains("link-local"), "{}", err.message);
        let many = vec!["https://example.com/a.png"; MAX_URL_IMAGES + 1];
        assert!(resolve(FetchPolicy::default(), &mut request_with(&many))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn fetched_images_land_where_they_were_referenced() {
        let url = serve("image/png; charset=binary", vec![1, 2, 3]).await;
        let mut request = request_with(&[&url]);
        resolve(LOOPBACK_ALLOWED, &mut request)
            .await
            .expect("fetch");
        assert_eq!(
            request.messages[0].content[1],
            Part::Image(Image {
                media_type: "image/png".into(),
                data: vec![1, 2, 3]
            })
        );
        assert!(!request.has_unresolved_images());
    }

    #[tokio::test]
    async fn oversized_and_unreachable_images_are_client_errors() {
        let url = serve("image/png", vec![0; MAX_IMAGE_BYTES + 1]).await;
        let err = resolve(LOOPBACK_ALLOWED, &mut request_with(&[&url]))
            .await
            .expect_err("too large");
        assert_eq!(err.fault, Fault::InvalidRequest);
        assert!(err.message.contains("limit"), "{}", err.message);
        let err = resolve(
            LOOPBACK_ALLOWED,
            &mut request_with(&["http://127.0.0.1:1/x.png"]),
        )
        .await
        .expect_err("unreachable");
        assert!(
            err.message.contains("could not fetch image"),
            "{}",
            err.message
        );
    }
}
