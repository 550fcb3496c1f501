//! The authentication gate in front of the gRPC service: every call, on every
//! path, is authenticated before it reaches [`crate::service`], so a Flight
//! method added later cannot forget the check. A rejected call is answered
//! with a trailers-only gRPC status (UNAUTHENTICATED) and never reaches the
//! service; an accepted one carries its [`Principal`] in the request
//! extensions for the role checks.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::codegen::Service;
use tonic::codegen::http;

use crate::auth::{AUTHORIZATION, Authenticator, Principal};
use crate::error::{ErrorKind, error_status};

#[derive(Clone)]
pub(crate) struct AuthGate<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> AuthGate<S> {
    pub(crate) fn new(inner: S, auth: Arc<Authenticator>) -> Self {
        Self { inner, auth }
    }
}

impl<S, B> Service<http::Request<B>> for AuthGate<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let header = match request.headers().get(AUTHORIZATION).map(|v| v.to_str()) {
                None => None,
                Some(Ok(value)) => Some(value.to_string()),
                Some(Err(_)) => {
                    return Ok(error_status(
                        ErrorKind::Unauthenticated,
                        "authorization header is not ASCII",
                    )
                    .into_http());
                }
            };
            match auth.authenticate(header.as_deref()).await {
                Ok(principal) => {
                    tracing::trace!(user = %principal.name, path = request.uri().path(), "Flight SQL call");
                    request.extensions_mut().insert::<Principal>(principal);
                    inner.call(request).await
                }
                Err(status) => {
                    tracing::debug!(path = request.uri().path(), %status, "Flight SQL: unauthenticated call");
                    Ok(status.into_http())
                }
            }
        })
    }
}
