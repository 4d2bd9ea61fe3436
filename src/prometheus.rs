//! The one door to Prometheus: instant queries through the HTTP API
//! (`POST /api/v1/query`, form-encoded), answered in typed serde structs.
//! It returns Prometheus facts (the values of the series a query returned)
//! and knows no policy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::config::PrometheusSettings;

/// The largest answer read: one series is a few hundred bytes.
const MAX_BODY: usize = 4 << 20;

/// Prometheus could not be used. `TokenFile`, `CaFile`, `Tls` and `Url` stop
/// the operator at start-up; the rest are a reading that could not be made:
/// transient for the gate (read again with backoff), never a pass.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("cannot read the bearer token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use the CA file {path}: {why}")]
    CaFile { path: PathBuf, why: String },
    #[error("cannot set up TLS for Prometheus: {0}")]
    Tls(String),
    #[error("prometheus.url {url:?} is not a usable URL: {why}")]
    Url { url: String, why: String },
    #[error("Prometheus at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("cannot reach Prometheus at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("Prometheus refused the query ({status} {error_type}): {error}")]
    Refused {
        status: u16,
        error_type: String,
        error: String,
    },
    #[error("Prometheus answered {status} with a body that is not its API's JSON: {why}")]
    BadAnswer { status: u16, why: String },
    #[error("the query returns a {result_type}; an analysis needs an instant vector or a scalar")]
    WrongType { result_type: String },
}

/// The `/api/v1/query` answer envelope.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorSample>),
    Scalar(SamplePair),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct VectorSample {
    #[allow(dead_code)]
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    value: SamplePair,
}

/// `[unix seconds, "value"]`: Prometheus sends values as strings ("NaN", "+Inf" included).
#[derive(Debug, Deserialize)]
struct SamplePair(#[allow(dead_code)] f64, String);

impl SamplePair {
    fn value(&self) -> Result<f64, String> {
        match self.1.as_str() {
            "NaN" => Ok(f64::NAN),
            "+Inf" | "Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            s => s
                .parse()
                .map_err(|_| format!("sample value {s:?} is not a number")),
        }
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A Prometheus HTTP API client. Cheap to clone.
#[derive(Clone)]
pub struct Prometheus {
    client: Client<Https, Full<Bytes>>,
    query_url: Uri,
    display_url: String,
    token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Prometheus")
            .field("url", &self.display_url)
            .finish_non_exhaustive()
    }
}

impl Prometheus {
    /// A client for the configured server: the token and CA files are read
    /// now (at start-up), and an unusable one refuses to start.
    pub fn new(settings: &PrometheusSettings) -> Result<Prometheus, PrometheusError> {
        let base = settings.url.trim_end_matches('/');
        let query_url: Uri =
            format!("{base}/api/v1/query")
                .parse()
                .map_err(|e: http::uri::InvalidUri| PrometheusError::Url {
                    url: settings.url.clone(),
                    why: e.to_string(),
                })?;
        let token = match &settings.bearer_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| PrometheusError::TokenFile {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let tls = tls_config(settings.ca_file.as_deref())?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Prometheus {
            client,
            query_url,
            display_url: base.to_string(),
            token,
            timeout: settings.timeout,
        })
    }

    /// Runs an instant query at Prometheus's current time; the values of
    /// the series it returned (one for a scalar), in the order returned.
    pub async fn query(&self, query: &str) -> Result<Vec<f64>, PrometheusError> {
        match tokio::time::timeout(self.timeout, self.query_inner(query)).await {
            Ok(r) => r,
            Err(_) => Err(PrometheusError::Timeout {
                url: self.display_url.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn query_inner(&self, query: &str) -> Result<Vec<f64>, PrometheusError> {
        let form = serde_urlencoded::to_string([("query", query)]).map_err(|e| {
            PrometheusError::BadAnswer {
                status: 0,
                why: format!("cannot encode the query: {e}"),
            }
        })?;
        let mut req = Request::post(self.query_url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| PrometheusError::Url {
                url: self.display_url.clone(),
                why: e.to_string(),
            })?;
        let unreachable = |why: String| PrometheusError::Unreachable {
            url: self.display_url.clone(),
            why,
        };
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        parse_answer(status, &body)
    }
}

/// The values an `/api/v1/query` answer holds, or the error it says.
fn parse_answer(status: StatusCode, body: &[u8]) -> Result<Vec<f64>, PrometheusError> {
    let code = status.as_u16();
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| PrometheusError::BadAnswer {
            status: code,
            why: e.to_string(),
        })?;
    if envelope.status != "success" || !status.is_success() {
        return Err(PrometheusError::Refused {
            status: code,
            error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
            error: envelope.error.unwrap_or_else(|| "no error given".into()),
        });
    }
    let bad = |why: String| PrometheusError::BadAnswer { status: code, why };
    match envelope.data {
        Some(Data::Vector(samples)) => samples
            .iter()
            .map(|s| s.value.value().map_err(bad))
            .collect(),
        Some(Data::Scalar(pair)) => Ok(vec![pair.value().map_err(bad)?]),
        Some(Data::Matrix(_)) => Err(PrometheusError::WrongType {
            result_type: "range vector (matrix)".into(),
        }),
        Some(Data::String(_)) => Err(PrometheusError::WrongType {
            result_type: "string".into(),
        }),
        None => Err(bad("a success without data".into())),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, PrometheusError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PrometheusError::Tls(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let ca_err = |why: String| PrometheusError::CaFile {
                path: path.to_path_buf(),
                why,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_err(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca_err(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_err("it holds no PEM certificate".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| ca_err(e.to_string()))?;
            }
        }
        None => {
            // The system's roots; an unreadable one is skipped, as kube does.
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_into_values_or_the_error_prometheus_gave() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1700000000.1,"0.004"]}]}}"#;
        assert_eq!(
            parse_answer(StatusCode::OK, ok).expect("vector"),
            vec![0.004]
        );
        let none = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(
            parse_answer(StatusCode::OK, none)
                .expect("empty")
                .is_empty()
        );
        let nan =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"NaN"]}}"#;
        assert!(parse_answer(StatusCode::OK, nan).expect("scalar")[0].is_nan());
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        let e = parse_answer(StatusCode::BAD_REQUEST, bad).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "Prometheus refused the query (400 bad_data): parse error at char 4"
        );
        let e = parse_answer(StatusCode::BAD_GATEWAY, b"<html>").expect_err("proxy page");
        assert!(e.to_string().starts_with("Prometheus answered 502"), "{e}");
        let m = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(
            parse_answer(StatusCode::OK, m),
            Err(PrometheusError::WrongType { .. })
        ));
    }

    #[tokio::test]
    async fn the_bearer_token_file_is_sent_and_never_shown() {
        use std::sync::{Arc, Mutex};
        /// (Authorization header, form body) of each request.
        type Seen = Arc<Mutex<Vec<(Option<String>, String)>>>;
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/prom/api/v1/query",
            axum::routing::post(move |headers: http::HeaderMap, body: String| {
                let auth = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                record
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((auth, body));
                async {
                    r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"7"]}]}}"#
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = std::env::temp_dir().join(format!("tollgate-prom-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let token = dir.join("token");
        std::fs::write(&token, "s3cr3t\n").expect("token file");
        let settings = PrometheusSettings {
            url: format!("http://{addr}/prom/"),
            timeout: Duration::from_secs(5),
            bearer_token_file: Some(token),
            ca_file: None,
        };
        let p = Prometheus::new(&settings).expect("client");
        assert_eq!(p.query("sum(up)").await.expect("answer"), vec![7.0]);
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(
            seen,
            vec![(
                Some("Bearer s3cr3t".to_string()),
                "query=sum%28up%29".to_string()
            )]
        );
        assert!(!format!("{p:?}").contains("s3cr3t"));
        let missing = PrometheusSettings {
            bearer_token_file: Some(dir.join("absent")),
            ..settings
        };
        let e = Prometheus::new(&missing).expect_err("no token file");
        assert!(
            e.to_string()
                .starts_with("cannot read the bearer token file"),
            "{e}"
        );
        server.abort();
        std::fs::remove_dir_all(&dir).ok();
    }
}
