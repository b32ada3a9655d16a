//! Conversion to and from tokio-util's `CancellationToken`, so that a [`Context`]
//! can go where a token is expected and a token can end a context.

use tokio_util::sync::CancellationToken;

use crate::cause::Cause;
use crate::context::{CancelGuard, Context};
use crate::sync::Arc;

impl Context {
    /// A `CancellationToken` that is cancelled when this context ends, for APIs that
    /// expect a token. Each call returns a new token; cancelling the token does not
    /// cancel the context (derive the context with
    /// [`with_cancellation_token`](Context::with_cancellation_token) for that).
    ///
    /// ```
    /// use palisade_context::Context;
    ///
    /// let (ctx, guard) = Context::background().with_cancel();
    /// let token = ctx.cancellation_token();
    /// assert!(!token.is_cancelled());
    /// guard.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    ///
    /// # Panics
    ///
    /// On a context with a deadline outside a tokio runtime (the deadline's timer
    /// cancels the token).
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
    pub fn cancellation_token(&self) -> CancellationToken {
        let token = CancellationToken::new();
        let cancel = token.clone();
        // The registration lives as long as the context; stopping it is not needed.
        let _registration = self.after_cancel(move || cancel.cancel());
        token
    }

    /// A child that also ends, with [`Cause::canceled`], when `token` is cancelled.
    ///
    /// A small task watches the token; it is aborted when the child ends or is
    /// dropped, so it never outlives the child.
    ///
    /// ```
    /// use palisade_context::Context;
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let token = CancellationToken::new();
    /// let (ctx, _guard) = Context::background().with_cancellation_token(token.clone());
    /// token.cancel();
    /// ctx.cancelled().await;
    /// assert!(ctx.cause().unwrap().is_canceled());
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, unless the token is already cancelled.
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
    pub fn with_cancellation_token(&self, token: CancellationToken) -> (Context, CancelGuard) {
        let (ctx, guard) = self.with_cancel();
        if token.is_cancelled() {
            guard.cancel();
            return (ctx, guard);
        }
        if let Some(node) = ctx.node() {
            let weak = Arc::downgrade(node);
            #[allow(clippy::disallowed_methods)] // the node's watcher, aborted when it ends
            let watcher = tokio::spawn(async move {
                token.cancelled().await;
                if let Some(node) = weak.upgrade() {
                    node.cancel_from(&Cause::canceled());
                }
            });
            node.attach_task(watcher.abort_handle());
        }
        (ctx, guard)
    }
}

impl From<&Context> for CancellationToken {
    /// [`Context::cancellation_token`].
    fn from(ctx: &Context) -> CancellationToken {
        ctx.cancellation_token()
    }
}

impl From<CancellationToken> for Context {
    /// A context that ends when `token` is cancelled:
    /// [`Context::with_cancellation_token`] under [`Context::background`], detached.
    fn from(token: CancellationToken) -> Context {
        #[allow(clippy::disallowed_methods)] // a token carries no parent: the context is a root
        let (ctx, guard) = Context::background().with_cancellation_token(token);
        guard.detach();
        ctx
    }
}
