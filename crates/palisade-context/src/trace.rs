//! Trace context and request ids across process boundaries: which trace and which
//! request a call belongs to, as values of the [`Context`], and the codecs of the
//! headers that carry them (W3C Trace Context, B3, `x-request-id`).
//!
//! A [`TraceContext`] names the trace ([`TraceId`]), the caller's span, the parent
//! of this request's work ([`SpanId`]), the caller's sampling decision
//! ([`TraceFlags`]) and the opaque vendor state that rides along ([`TraceState`]).
//! It travels in the [`Context`] as a typed value: the server layer decodes it from
//! the request's headers and attaches it with [`Context::with_value`]; each outgoing
//! attempt writes a [`child`](TraceContext::child) of it, a new span of the same
//! trace.
//!
//! | header | example | codec |
//! | --- | --- | --- |
//! | W3C `traceparent` | `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01` | [`decode_traceparent`], [`encode_traceparent`] |
//! | W3C `tracestate` | `rojo=00f067aa0ba902b7,congo=t61rcWkgMzE` | [`decode_tracestate`], [`TraceState::as_str`] |
//! | B3 single `b3` | `80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1` | [`decode_b3`], [`encode_b3`] |
//! | B3 multiple `X-B3-*` | `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`, `X-B3-Flags`, `X-B3-ParentSpanId` | [`decode_b3_multi`], [`encode_b3_multi`] |
//! | `x-request-id` | `0b9d7f2e-6c1a-4f3e-9a57-3c2e8d41b6a0` | [`RequestId::parse`], [`RequestId::as_str`] |
//!
//! Decoding treats every value as untrusted and never panics: a value that is not
//! the format is refused with a [`TraceHeaderError`] that names the header and says
//! what was wrong.
//!
//! ```
//! use palisade_context::Context;
//! use palisade_context::trace::{self, TraceContext, TraceFlags};
//!
//! // Server: the caller's trace, or a new one when its header is missing or invalid.
//! let inbound = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! let parent = inbound
//!     .and_then(|value| trace::decode_traceparent(value).ok())
//!     .unwrap_or_else(|| TraceContext::new_root(TraceFlags::NOT_SAMPLED));
//! let request = Context::background().with_value(parent);
//!
//! // Client: each attempt is a new span of the same trace.
//! let attempt = TraceContext::from_context(&request).unwrap().child();
//! let outbound = trace::encode_traceparent(&attempt);
//! assert!(outbound.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! assert!(outbound.ends_with("-01"));
//! assert_ne!(&outbound[36..52], "00f067aa0ba902b7");
//! ```
//!
//! # At the inbound edge
//!
//! The server layer follows one rule: **a trace header never fails a request.** A
//! valid header joins the caller's trace; a missing or invalid one starts a new
//! trace ([`TraceContext::new_root`], not sampled, as W3C asks of a trace a
//! component starts itself) and the error is worth a debug event at most. Trace
//! headers are hints from a caller that may be buggy or hostile, and a request
//! served under a fresh trace id is better than a request refused over one.
//!
//! - `tracestate` is read only when `traceparent` decoded, and a bad `tracestate`
//!   is dropped without touching the `traceparent` (W3C: it "MUST NOT affect the
//!   parsing of `traceparent`"). Several `tracestate` fields are joined with `,` in
//!   their order before decoding (RFC 9110 field order).
//! - Two `traceparent` fields are invalid together: the trace restarts.
//! - Of several formats, the first that decodes wins: `traceparent`, then `b3`, then
//!   the `X-B3-*` headers (B3 says the single header wins over the multiple
//!   ones). A B3 sampling decision without ids starts a new trace with that
//!   decision ([`B3Header::into_trace_context`]).

use std::error::Error;
use std::fmt;
use std::num::{NonZeroU64, NonZeroU128};

use crate::Context;
use crate::sync::Arc;

/// The name of the W3C trace parent header.
pub const TRACEPARENT: &str = "traceparent";
/// The name of the W3C trace state header.
pub const TRACESTATE: &str = "tracestate";
/// The name of the B3 single header.
pub const B3: &str = "b3";
/// The name of the B3 multi-header trace id, lowercase (names match in any case).
pub const X_B3_TRACE_ID: &str = "x-b3-traceid";
/// The name of the B3 multi-header span id.
pub const X_B3_SPAN_ID: &str = "x-b3-spanid";
/// The name of the B3 multi-header parent span id.
pub const X_B3_PARENT_SPAN_ID: &str = "x-b3-parentspanid";
/// The name of the B3 multi-header sampling decision.
pub const X_B3_SAMPLED: &str = "x-b3-sampled";
/// The name of the B3 multi-header debug flag.
pub const X_B3_FLAGS: &str = "x-b3-flags";
/// The name of the request id header.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The id of a whole trace: 16 bytes, never all zero.
///
/// Its [`Display`](fmt::Display) is 32 lowercase hex digits, as in `traceparent`.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(NonZeroU128);

impl TraceId {
    /// The id with these bytes (big-endian, as written in headers), or `None` when
    /// they are all zero, which W3C and B3 reserve as invalid.
    pub const fn from_bytes(bytes: [u8; 16]) -> Option<TraceId> {
        match NonZeroU128::new(u128::from_be_bytes(bytes)) {
            Some(id) => Some(TraceId(id)),
            None => None,
        }
    }

    /// The id's 16 bytes, big-endian.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.get().to_be_bytes()
    }

    /// A random id from the thread's cryptographically secure generator
    /// (`rand::rng()`), so ids from different services do not collide and cannot
    /// be guessed.
    pub fn random() -> TraceId {
        loop {
            if let Some(id) = NonZeroU128::new(rand::random()) {
                return TraceId(id);
            }
        }
    }

    fn from_u128(value: u128) -> Option<TraceId> {
        NonZeroU128::new(value).map(TraceId)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0.get())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// The id of a span within a trace: 8 bytes, never all zero.
///
/// Its [`Display`](fmt::Display) is 16 lowercase hex digits, as in `traceparent`.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(NonZeroU64);

impl SpanId {
    /// The id with these bytes (big-endian, as written in headers), or `None` when
    /// they are all zero, which W3C and B3 reserve as invalid.
    pub const fn from_bytes(bytes: [u8; 8]) -> Option<SpanId> {
        match NonZeroU64::new(u64::from_be_bytes(bytes)) {
            Some(id) => Some(SpanId(id)),
            None => None,
        }
    }

    /// The id's 8 bytes, big-endian.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.get().to_be_bytes()
    }

    /// A random id from the thread's cryptographically secure generator
    /// (`rand::rng()`).
    pub fn random() -> SpanId {
        loop {
            if let Some(id) = NonZeroU64::new(rand::random()) {
                return SpanId(id);
            }
        }
    }

    fn from_u128(value: u128) -> Option<SpanId> {
        u64::try_from(value)
            .ok()
            .and_then(NonZeroU64::new)
            .map(SpanId)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0.get())
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The caller's sampling decision: sampled (the caller may have recorded trace
/// data) or not, and B3's debug, a forced sample.
///
/// W3C `traceparent` carries only the sampled bit; its other bits are reserved and
/// W3C says vendors "MUST set those to zero", so they are dropped on decoding and
/// never written. Debug exists only in B3 and implies sampled; `traceparent`
/// writes a debug trace as sampled. The default is not sampled, the W3C default
/// for a trace a component starts itself.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

/// The W3C sampled bit, the least significant bit of `trace-flags`.
const SAMPLED_BIT: u8 = 0x01;
/// B3's debug: a bit W3C does not define, kept only in memory, never written to
/// `traceparent`. Always set together with `SAMPLED_BIT`.
const DEBUG_BIT: u8 = 0x80;

impl TraceFlags {
    /// Not sampled.
    pub const NOT_SAMPLED: TraceFlags = TraceFlags(0);
    /// Sampled.
    pub const SAMPLED: TraceFlags = TraceFlags(SAMPLED_BIT);
    /// B3's debug: sampled, and forced so by the caller.
    pub const DEBUG: TraceFlags = TraceFlags(SAMPLED_BIT | DEBUG_BIT);

    /// Whether the caller may have recorded trace data (true for debug too).
    pub const fn is_sampled(self) -> bool {
        self.0 & SAMPLED_BIT != 0
    }

    /// Whether the trace is forced to be sampled (B3's debug).
    pub const fn is_debug(self) -> bool {
        self.0 & DEBUG_BIT != 0
    }

    /// The flags of a W3C `trace-flags` byte: the sampled bit; the reserved bits
    /// are dropped.
    pub const fn from_w3c(byte: u8) -> TraceFlags {
        TraceFlags(byte & SAMPLED_BIT)
    }

    /// The W3C `trace-flags` byte: the sampled bit, reserved bits zero.
    pub const fn to_w3c(self) -> u8 {
        self.0 & SAMPLED_BIT
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceFlags")
            .field("sampled", &self.is_sampled())
            .field("debug", &self.is_debug())
            .finish()
    }
}

/// The W3C `tracestate`: vendors' opaque entries, passed through within the limits
/// the W3C spec sets.
///
/// It holds the list members in their order, joined by `,`, without the optional
/// whitespace and empty members the header may contain (W3C allows dropping
/// both). Palisade reads none of it; it carries it from the inbound request to
/// every outgoing one. Cloning is a reference-count increment; the empty state
/// does not allocate.
///
/// # Limits
///
/// At most [`MAX_MEMBERS`](TraceState::MAX_MEMBERS) (32) list members and
/// [`MAX_LEN`](TraceState::MAX_LEN) (512) characters, commas included: the 32 of
/// the W3C grammar and the 512 W3C asks every vendor to propagate. A longer value
/// is **truncated, not dropped**, the way the spec says: whole members only, first
/// every member longer than 128 characters, then members from the end until the
/// rest fits. The leftmost members, the most recent vendors, survive.
/// Truncation comes first; the members kept are then checked, so a value is
/// refused only for what it would have propagated.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct TraceState(Option<Arc<str>>);

impl TraceState {
    /// The most list members kept: the W3C grammar allows 32.
    pub const MAX_MEMBERS: usize = 32;
    /// The most characters kept, commas included: the 512 W3C asks vendors to
    /// propagate at least.
    pub const MAX_LEN: usize = 512;
    /// Members longer than this are the first to go when a value is truncated.
    const LONG_MEMBER: usize = 128;
    /// The W3C limit on a key's length.
    const MAX_KEY_LEN: usize = 256;
    /// The W3C limit on a value's length.
    const MAX_VALUE_LEN: usize = 256;

    /// The empty state: no vendor entries.
    pub const fn empty() -> TraceState {
        TraceState(None)
    }

    /// The state as a `tracestate` header value: members joined by `,`, empty
    /// when there are none (then send no `tracestate` header at all: W3C asks
    /// vendors not to send an empty one).
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The value of the entry with this key, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.as_str()
            .split(',')
            .filter_map(|member| member.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, value)| value)
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceState({:?})", self.as_str())
    }
}

/// Where a request stands in a distributed trace: the trace, the caller's span,
/// the sampling decision and the vendors' state.
///
/// It is a value of the [`Context`]: attach it with [`Context::with_value`], read
/// it with [`TraceContext::from_context`]. The span id is the **parent's**: the
/// span of the caller that sent the request (W3C's `parent-id`). An outgoing
/// attempt sends a [`child`](TraceContext::child), whose span id is new.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
    state: TraceState,
}

impl TraceContext {
    /// A trace context of these ids and flags, with an empty state.
    pub fn new(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> TraceContext {
        TraceContext {
            trace_id,
            span_id,
            flags,
            state: TraceState::empty(),
        }
    }

    /// A new trace: a random trace id and span id (from [`TraceId::random`] and
    /// [`SpanId::random`]) and `flags`. What a request that arrived without a
    /// valid trace header runs under; W3C's default for a trace a component starts
    /// is [`TraceFlags::NOT_SAMPLED`].
    pub fn new_root(flags: TraceFlags) -> TraceContext {
        TraceContext::new(TraceId::random(), SpanId::random(), flags)
    }

    /// A child span for an outgoing call or attempt: the same trace id, flags and
    /// state, a new random span id.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            span_id: SpanId::random(),
            ..self.clone()
        }
    }

    /// This context with `state` in place of its state.
    pub fn with_state(self, state: TraceState) -> TraceContext {
        TraceContext { state, ..self }
    }

    /// This context with `flags` in place of its flags. W3C allows changing the
    /// sampling decision only together with the span id: use it on a
    /// [`child`](TraceContext::child).
    pub fn with_flags(self, flags: TraceFlags) -> TraceContext {
        TraceContext { flags, ..self }
    }

    /// The trace.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The parent span: the span of the caller, W3C's `parent-id`.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The sampling decision.
    pub fn flags(&self) -> TraceFlags {
        self.flags
    }

    /// The vendors' state.
    pub fn state(&self) -> &TraceState {
        &self.state
    }

    /// The trace context `ctx` carries, if any: `ctx.get::<TraceContext>()`.
    ///
    /// ```
    /// use palisade_context::Context;
    /// use palisade_context::trace::{TraceContext, TraceFlags};
    ///
    /// let trace = TraceContext::new_root(TraceFlags::SAMPLED);
    /// let ctx = Context::background().with_value(trace.clone());
    /// assert_eq!(TraceContext::from_context(&ctx), Some(&trace));
    /// assert_eq!(TraceContext::from_context(&Context::background()), None);
    /// ```
    pub fn from_context(ctx: &Context) -> Option<&TraceContext> {
        ctx.get::<TraceContext>()
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &format_args!("{}", self.trace_id))
            .field("span_id", &format_args!("{}", self.span_id))
            .field("flags", &self.flags)
            .field("state", &self.state.as_str())
            .finish()
    }
}

/// A request's id, as sent in the `x-request-id` header: 1 to
/// [`MAX_LEN`](RequestId::MAX_LEN) (128) visible ASCII characters.
///
/// Visible ASCII is `!` to `~` (0x21 to 0x7E): printable ASCII without the space,
/// so the id is one token in a log line, and nothing a header, a log or a
/// terminal treats specially. It is a value of the [`Context`]: attach it with
/// [`Context::with_value`], read it with [`RequestId::from_context`]. An id of
/// up to 38 characters (a UUID is 36) is held in place, so that making,
/// cloning and dropping it allocates nothing; a longer one is shared, and
/// cloning it is a reference-count increment.
///
/// ```
/// use palisade_context::Context;
/// use palisade_context::trace::RequestId;
///
/// // Server: the caller's id, or a new one when it sent none or a bad one.
/// let id = RequestId::parse("req-42").unwrap_or_else(|_| RequestId::new_random());
/// let ctx = Context::background().with_value(id);
/// assert_eq!(RequestId::from_context(&ctx).unwrap().as_str(), "req-42");
///
/// assert!(RequestId::parse("two words").is_err());
/// assert_eq!(RequestId::new_random().as_str().len(), 36);
/// ```
#[derive(Clone)]
pub struct RequestId(IdRepr);

/// How long an id [`RequestId`] holds in place can be.
const INLINE_ID: usize = 38;

#[derive(Clone)]
enum IdRepr {
    /// Up to [`INLINE_ID`] visible ASCII bytes, the first `len` of `bytes`.
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    /// A longer id.
    Shared(Arc<str>),
}

impl PartialEq for RequestId {
    fn eq(&self, other: &RequestId) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for RequestId {}

impl std::hash::Hash for RequestId {
    /// As the id's text hashes.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

impl PartialOrd for RequestId {
    fn partial_cmp(&self, other: &RequestId) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RequestId {
    /// As the ids' texts compare.
    fn cmp(&self, other: &RequestId) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl RequestId {
    /// The longest request id accepted, in bytes (characters: they are ASCII).
    ///
    /// Long enough for every id format in common use (a UUID is 36 characters, a
    /// trace id 32, AWS's `X-Amzn-Trace-Id` about 40), short enough that a hostile
    /// header cannot make every log line and outgoing request of this service
    /// carry kilobytes.
    pub const MAX_LEN: usize = 128;

    /// The request id in `value`, a header value: optional whitespace (spaces,
    /// tabs) around it is ignored; what remains must be 1 to
    /// [`MAX_LEN`](RequestId::MAX_LEN) visible ASCII characters.
    #[inline]
    pub fn parse(value: &str) -> Result<RequestId, TraceHeaderError> {
        let id = trim_ows(value);
        RequestId::check(id.as_bytes())
            .map(|()| RequestId::from_checked(id))
            .map_err(|reason| TraceHeaderError::new(X_REQUEST_ID, value, reason))
    }

    /// [`RequestId::parse`] of a header value's bytes, as `http`'s
    /// `HeaderValue::as_bytes` gives them: the same rules, with no need for the
    /// value to be checked as text first (bytes that are not visible ASCII
    /// refuse the id).
    ///
    /// ```
    /// use palisade_context::trace::RequestId;
    ///
    /// assert_eq!(RequestId::parse_bytes(b" req-42 ").unwrap().as_str(), "req-42");
    /// assert!(RequestId::parse_bytes(b"caf\xc3\xa9").is_err());
    /// ```
    pub fn parse_bytes(value: &[u8]) -> Result<RequestId, TraceHeaderError> {
        let id = trim_ows_bytes(value);
        RequestId::check(id)
            // Visible ASCII only: always text.
            .and_then(|()| std::str::from_utf8(id).map_err(|_| Reason::RequestIdChars))
            .map(RequestId::from_checked)
            .map_err(|reason| {
                TraceHeaderError::new(X_REQUEST_ID, &String::from_utf8_lossy(value), reason)
            })
    }

    /// The id of `id`, checked: in place if it is short enough.
    #[inline]
    fn from_checked(id: &str) -> RequestId {
        let text = id.as_bytes();
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE_ID => {
                let mut bytes = [0; INLINE_ID];
                bytes[..text.len()].copy_from_slice(text);
                RequestId(IdRepr::Inline { len, bytes })
            }
            _ => RequestId(IdRepr::Shared(id.into())),
        }
    }

    /// Whether `id` (trimmed) is one: visible ASCII, 1 to `MAX_LEN` bytes.
    #[inline]
    fn check(id: &[u8]) -> Result<(), Reason> {
        if id.is_empty() {
            return Err(Reason::Empty);
        }
        if id.len() > RequestId::MAX_LEN {
            return Err(Reason::RequestIdLen);
        }
        if !all_visible(id) {
            return Err(Reason::RequestIdChars);
        }
        Ok(())
    }

    /// A new random id in the form of a version 4 UUID, 36 characters such as
    /// `0b9d7f2e-6c1a-4f3e-9a57-3c2e8d41b6a0`, from the thread's cryptographically
    /// secure generator (`rand::rng()`).
    pub fn new_random() -> RequestId {
        let mut bytes: [u8; 16] = rand::random();
        // The version (4, random) and the variant (RFC 9562) bits.
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let value = u128::from_be_bytes(bytes);
        // 8-4-4-4-12 hex digits: the 32 digits, with a `-` before the 9th,
        // 13th, 17th and 21st. Truncations intended: the id's 32-bit words.
        let mut digits = [0u8; 32];
        for (i, word) in digits.chunks_exact_mut(8).enumerate() {
            word.copy_from_slice(&hex_of_u32((value >> (96 - 32 * i)) as u32));
        }
        let mut text = [b'-'; INLINE_ID];
        text[..8].copy_from_slice(&digits[..8]);
        text[9..13].copy_from_slice(&digits[8..12]);
        text[14..18].copy_from_slice(&digits[12..16]);
        text[19..23].copy_from_slice(&digits[16..20]);
        text[24..36].copy_from_slice(&digits[20..32]);
        RequestId(IdRepr::Inline {
            len: 36,
            bytes: text,
        })
    }

    /// The id, as written in the header.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Visible ASCII, checked when the id was made: always text.
            IdRepr::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            IdRepr::Shared(text) => text,
        }
    }

    /// The id's bytes, as written in the header (visible ASCII).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            IdRepr::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            IdRepr::Shared(text) => text.as_bytes(),
        }
    }

    /// The request id `ctx` carries, if any: `ctx.get::<RequestId>()`.
    pub fn from_context(ctx: &Context) -> Option<&RequestId> {
        ctx.get::<RequestId>()
    }
}

impl std::str::FromStr for RequestId {
    type Err = TraceHeaderError;

    /// As [`RequestId::parse`].
    fn from_str(value: &str) -> Result<RequestId, TraceHeaderError> {
        RequestId::parse(value)
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// The id's text, shared: what an enriched error or a log field keeps.
impl From<RequestId> for Arc<str> {
    fn from(id: RequestId) -> Arc<str> {
        match id.0 {
            IdRepr::Inline { .. } => Arc::from(id.as_str()),
            IdRepr::Shared(text) => text,
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({:?})", self.as_str())
    }
}

/// Encodes `ctx` as a `traceparent` value, always version `00`: 55 characters,
/// `00-<trace id>-<span id>-<flags>`, lowercase hex.
pub fn encode_traceparent(ctx: &TraceContext) -> String {
    // ASCII throughout: the conversion cannot fail.
    String::from_utf8(encode_traceparent_bytes(ctx).to_vec()).unwrap_or_default()
}

/// The length of a version `00` `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// [`encode_traceparent`] into a fixed buffer, with no allocation: the 55
/// bytes of the value (lowercase hex, `-` and the version `00`), ready to be
/// copied into a header value.
///
/// ```
/// use palisade_context::trace::{self, TraceContext};
///
/// let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let ctx = trace::decode_traceparent(value).unwrap();
/// assert_eq!(&trace::encode_traceparent_bytes(&ctx)[..], value.as_bytes());
/// ```
pub fn encode_traceparent_bytes(ctx: &TraceContext) -> [u8; TRACEPARENT_LEN] {
    let mut out = [b'-'; TRACEPARENT_LEN];
    out[0] = b'0';
    out[1] = b'0';
    let trace = ctx.trace_id.0.get();
    // The id's four 32-bit words, most significant first: truncation intended.
    out[3..11].copy_from_slice(&hex_of_u32((trace >> 96) as u32));
    out[11..19].copy_from_slice(&hex_of_u32((trace >> 64) as u32));
    out[19..27].copy_from_slice(&hex_of_u32((trace >> 32) as u32));
    out[27..35].copy_from_slice(&hex_of_u32(trace as u32));
    let span = ctx.span_id.0.get();
    out[36..44].copy_from_slice(&hex_of_u32((span >> 32) as u32));
    out[44..52].copy_from_slice(&hex_of_u32(span as u32));
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let flags = ctx.flags.to_w3c();
    out[53] = HEX[usize::from(flags >> 4)];
    out[54] = HEX[usize::from(flags & 0xf)];
    out
}

/// The 8 lowercase hex digits of `value`, all eight made at once (in one
/// `u64`).
#[inline]
fn hex_of_u32(value: u32) -> [u8; 8] {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = u64::from(value);
    // One nibble a byte, the most significant in the first byte.
    let x = ((x & 0xffff_0000) << 16) | (x & 0xffff);
    let x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
    let x = ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f);
    // 1 in each byte whose nibble is 10 or more: a letter.
    let letters = ((x + ONES * 6) >> 4) & ONES;
    // `0` + n for a digit, `a` + (n - 10) for a letter; no byte carries.
    (x + ONES * u64::from(b'0') + letters * u64::from(b'a' - b'0' - 10)).to_be_bytes()
}

/// Decodes a `traceparent` value, as the W3C Trace Context spec says; the state
/// of the result is empty (it comes from [`decode_tracestate`]).
///
/// Optional whitespace (spaces, tabs) around the value is ignored. Then:
///
/// - the version is two lowercase hex digits and a `-`; `ff` is invalid;
/// - version `00` is exactly `00-<32 hex>-<16 hex>-<2 hex>`, 55 characters,
///   lowercase hex only, nothing after the flags;
/// - a later version (neither `00` nor `ff`) is at least 55 characters, its first
///   four fields are read the same way, and what follows the flags must start with
///   a `-` and is ignored: W3C says later versions only add fields;
/// - an all-zero trace id or span id is invalid;
/// - of the flags, only the sampled bit is kept.
pub fn decode_traceparent(value: &str) -> Result<TraceContext, TraceHeaderError> {
    parse_traceparent(value.as_bytes())
        .map_err(|reason| TraceHeaderError::new(TRACEPARENT, value, reason))
}

/// [`decode_traceparent`] of a header value's bytes, as `http`'s
/// `HeaderValue::as_bytes` gives them, with no need for the value to be
/// checked as text first: the same rules, byte for byte. (The fields a later
/// version adds after the flags are ignored whatever their bytes; a caller
/// that wants them visible ASCII checks that itself.)
///
/// ```
/// use palisade_context::trace;
///
/// let value = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let ctx = trace::decode_traceparent_bytes(value).unwrap();
/// assert_eq!(ctx.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(trace::decode_traceparent_bytes(b"00-\xff").is_err());
/// ```
#[inline]
pub fn decode_traceparent_bytes(value: &[u8]) -> Result<TraceContext, TraceHeaderError> {
    parse_traceparent(value).map_err(|reason| {
        TraceHeaderError::new(TRACEPARENT, &String::from_utf8_lossy(value), reason)
    })
}

fn parse_traceparent(value: &[u8]) -> Result<TraceContext, Reason> {
    let v = trim_ows_bytes(value);
    if v.is_empty() {
        return Err(Reason::Empty);
    }
    let version = match v {
        [a, b, b'-', ..] => hex_pair(*a, *b).ok_or(Reason::Version)?,
        _ => return Err(Reason::Version),
    };
    if version == 0xff {
        return Err(Reason::VersionFf);
    }
    if version == 0 && v.len() != 55 {
        return Err(Reason::Length00);
    }
    if v.len() < 55 {
        return Err(Reason::TooShort);
    }
    let Some((fields, rest)) = v.split_first_chunk::<55>() else {
        return Err(Reason::TooShort);
    };
    if fields[35] != b'-' {
        return Err(Reason::TraceId);
    }
    let word = |at: usize| hex_u64(&fields[at..at + 16]);
    let high = word(3).ok_or(Reason::TraceId)?;
    let low = word(19).ok_or(Reason::TraceId)?;
    let trace_id = TraceId::from_u128((u128::from(high) << 64) | u128::from(low))
        .ok_or(Reason::ZeroTraceId)?;
    if fields[52] != b'-' {
        return Err(Reason::SpanId);
    }
    let span_id = word(36).ok_or(Reason::SpanId)?;
    let span_id = NonZeroU64::new(span_id)
        .map(SpanId)
        .ok_or(Reason::ZeroSpanId)?;
    let flags = hex_pair(fields[53], fields[54]).ok_or(Reason::Flags)?;
    if rest.first().is_some_and(|&b| b != b'-') {
        return Err(Reason::AfterFlags);
    }
    Ok(TraceContext::new(
        trace_id,
        span_id,
        TraceFlags::from_w3c(flags),
    ))
}

/// Whether every byte is visible ASCII (`!` to `~`), eight bytes weighed at
/// once.
#[inline]
fn all_visible(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            return false;
        };
        let x = u64::from_le_bytes(chunk);
        // As in `hex8`: with no byte at 0x80 or above, no subtraction borrows.
        let at_least = |c: u8| ((x | HIGH) - ONES * u64::from(c)) & HIGH;
        if x & HIGH != 0 || at_least(b'!') & !at_least(0x7f) != HIGH {
            return false;
        }
    }
    chunks.remainder().iter().all(u8::is_ascii_graphic)
}

/// The value of each lowercase hex digit, or [`NOT_HEX`].
const HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};
/// What [`HEX_VALUE`] gives a byte that is not a lowercase hex digit.
const NOT_HEX: u8 = 0x10;

/// The byte of two lowercase hex digits.
#[inline]
fn hex_pair(a: u8, b: u8) -> Option<u8> {
    let (a, b) = (HEX_VALUE[usize::from(a)], HEX_VALUE[usize::from(b)]);
    ((a | b) & NOT_HEX == 0).then_some((a << 4) | b)
}

/// The value of 16 lowercase hex digits; `None` if one is not.
#[inline(always)]
fn hex_u64(digits: &[u8]) -> Option<u64> {
    let (high, low) = digits.split_at_checked(8)?;
    let high = hex8(high.try_into().ok()?)?;
    let low = hex8(low.try_into().ok()?)?;
    Some((u64::from(high) << 32) | u64::from(low))
}

/// The value of 8 lowercase hex digits, all eight bytes weighed at once (in
/// one `u64`); `None` if one is not a digit.
#[inline]
fn hex8(digits: [u8; 8]) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = u64::from_be_bytes(digits);
    if x & HIGH != 0 {
        return None;
    }
    // The high bit of each byte of the result: whether that byte is at
    // least `c`. Every byte is below 0x80, so no subtraction borrows from
    // the next byte.
    let at_least = |c: u8| ((x | HIGH) - ONES * u64::from(c)) & HIGH;
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    if digit | letter != HIGH {
        return None;
    }
    // Each byte's value: its low four bits, plus 9 for a letter.
    let nibbles = (x & (ONES * 0x0f)) + (letter >> 7) * 9;
    // Eight nibbles, one a byte, packed into four bytes, in order.
    let pairs = (nibbles | (nibbles >> 4)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    // Four bytes: fits.
    Some(((quads | (quads >> 16)) & 0xffff_ffff) as u32)
}

/// Decodes a `tracestate` value into a [`TraceState`], within its
/// [limits](TraceState#limits).
///
/// Optional whitespace around members and empty members are dropped; an empty
/// value is the empty state. Each member kept must be `key=value` as W3C defines
/// them: a key of 1 to 256 characters, lowercase letters, digits, `_`, `-`, `*`,
/// `/` and `@`, starting with a letter or digit (the Level 2 grammar, which admits
/// every Level 1 key, multi-tenant `tenant@system` keys included); a value of 1 to
/// 256 printable ASCII characters other than `,` and `=`, not ending in a space.
/// A member that is not, or a key that appears twice, makes the whole value
/// invalid: the state is then dropped, never the `traceparent` with it.
pub fn decode_tracestate(value: &str) -> Result<TraceState, TraceHeaderError> {
    let err = |reason| TraceHeaderError::new(TRACESTATE, value, reason);
    let members = || value.split(',').map(trim_ows).filter(|m| !m.is_empty());

    // The first pass measures the value as it would be propagated.
    let (mut count, mut len) = (0usize, 0usize);
    for member in members() {
        len += usize::from(count > 0) + member.len();
        count += 1;
    }
    let truncate = count > TraceState::MAX_MEMBERS || len > TraceState::MAX_LEN;

    // The second keeps what fits and checks what it keeps.
    let mut out = String::new();
    let mut kept = 0;
    for member in members() {
        if truncate && member.len() > TraceState::LONG_MEMBER {
            continue;
        }
        let extra = usize::from(kept > 0) + member.len();
        if kept == TraceState::MAX_MEMBERS || out.len() + extra > TraceState::MAX_LEN {
            break;
        }
        let Some((key, val)) = member.split_once('=') else {
            return Err(err(Reason::Member));
        };
        if !valid_key(key) {
            return Err(err(Reason::Key));
        }
        if !valid_value(val) {
            return Err(err(Reason::Value));
        }
        if out
            .split(',')
            .any(|m| m.split_once('=').is_some_and(|(k, _)| k == key))
        {
            return Err(err(Reason::DuplicateKey));
        }
        if kept > 0 {
            out.push(',');
        }
        out.push_str(member);
        kept += 1;
    }
    Ok(if out.is_empty() {
        TraceState::empty()
    } else {
        TraceState(Some(out.into()))
    })
}

/// What B3 headers carried: a trace to join, or only a sampling decision.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum B3Header {
    /// Trace and span ids with a sampling decision: the caller's trace.
    Trace(TraceContext),
    /// A sampling decision alone (`b3: 0`, `1` or `d`; or only `X-B3-Sampled` or
    /// `X-B3-Flags`): no trace to join.
    Decision(TraceFlags),
}

impl B3Header {
    /// The sampling decision.
    pub fn flags(&self) -> TraceFlags {
        match self {
            B3Header::Trace(ctx) => ctx.flags(),
            B3Header::Decision(flags) => *flags,
        }
    }

    /// The trace context to run the request under: the caller's trace, or for a
    /// decision alone a new trace ([`TraceContext::new_root`]) with that decision.
    pub fn into_trace_context(self) -> TraceContext {
        match self {
            B3Header::Trace(ctx) => ctx,
            B3Header::Decision(flags) => TraceContext::new_root(flags),
        }
    }
}

/// Encodes `ctx` as a B3 single header value,
/// `{traceid}-{spanid}-{sampling}`: a 32-digit trace id, the span id, and `1`,
/// `0` or `d` (debug).
///
/// B3 carries no `tracestate`. The optional parent span id is not written: the
/// context does not keep the caller's parent.
pub fn encode_b3(ctx: &TraceContext) -> String {
    let mut out = String::with_capacity(51);
    push_hex(&mut out, ctx.trace_id.0.get(), 32);
    out.push('-');
    push_hex(&mut out, u128::from(ctx.span_id.0.get()), 16);
    out.push('-');
    out.push(b3_sampling(ctx.flags));
    out
}

/// Decodes a B3 single header value,
/// `{traceid}-{spanid}[-{sampling}[-{parentspanid}]]` or a lone sampling state,
/// as the B3 spec says.
///
/// Optional whitespace around the value is ignored. The trace id is 16 or 32
/// lowercase hex digits (a 64-bit id becomes a 128-bit one with the high half
/// zero), the span id and parent span id 16; none may be all zero. The sampling
/// state is `1` (accept), `0` (deny) or `d` (debug); absent, B3's "defer", it
/// decodes as [`TraceFlags::NOT_SAMPLED`] (W3C has no defer), so the calls this
/// service makes send a deny, `0`. The parent span id is checked and dropped: it names the caller's parent,
/// which the context does not keep.
pub fn decode_b3(value: &str) -> Result<B3Header, TraceHeaderError> {
    let err = |reason| TraceHeaderError::new(B3, value, reason);
    let v = trim_ows(value);
    if v.is_empty() {
        return Err(err(Reason::Empty));
    }
    if v.len() == 1 {
        return parse_b3_sampling(v)
            .map(B3Header::Decision)
            .ok_or_else(|| err(Reason::B3Form));
    }
    let mut fields = v.split('-');
    let (Some(trace_id), Some(span_id)) = (fields.next(), fields.next()) else {
        return Err(err(Reason::B3Form));
    };
    let (sampling, parent) = (fields.next(), fields.next());
    if fields.next().is_some() {
        return Err(err(Reason::B3Form));
    }
    let trace_id = parse_b3_trace_id(trace_id).map_err(|zero| {
        err(if zero {
            Reason::ZeroTraceId
        } else {
            Reason::B3TraceId
        })
    })?;
    let span_id = parse_b3_span_id(span_id).map_err(|zero| {
        err(if zero {
            Reason::B3ZeroSpanId
        } else {
            Reason::B3SpanId
        })
    })?;
    let flags = match sampling {
        None => TraceFlags::NOT_SAMPLED,
        Some(s) => parse_b3_sampling(s).ok_or_else(|| err(Reason::B3Sampling))?,
    };
    if let Some(parent) = parent {
        parse_b3_span_id(parent).map_err(|zero| {
            err(if zero {
                Reason::B3ZeroSpanId
            } else {
                Reason::B3ParentSpanId
            })
        })?;
    }
    Ok(B3Header::Trace(TraceContext::new(trace_id, span_id, flags)))
}

/// Encodes `ctx` as B3 multiple headers: `x-b3-traceid` (32 digits),
/// `x-b3-spanid`, and `x-b3-sampled` (`1` or `0`) or, for debug, `x-b3-flags: 1`
/// (debug implies accept, and B3 asks not to send both). Names are lowercase, as
/// HTTP/2 and gRPC metadata need.
///
/// As with [`encode_b3`], neither the state nor a parent span id is written.
pub fn encode_b3_multi(ctx: &TraceContext) -> [(&'static str, String); 3] {
    let mut trace_id = String::with_capacity(32);
    push_hex(&mut trace_id, ctx.trace_id.0.get(), 32);
    let mut span_id = String::with_capacity(16);
    push_hex(&mut span_id, u128::from(ctx.span_id.0.get()), 16);
    let decision = if ctx.flags.is_debug() {
        (X_B3_FLAGS, "1".to_owned())
    } else {
        (
            X_B3_SAMPLED,
            if ctx.flags.is_sampled() { "1" } else { "0" }.to_owned(),
        )
    };
    [(X_B3_TRACE_ID, trace_id), (X_B3_SPAN_ID, span_id), decision]
}

/// Decodes B3 multiple headers from a request's `(name, value)` pairs, as the B3
/// spec says; other headers are skipped, names match in any case, and of a header
/// sent twice the first value wins. `Ok(None)` when they carry neither ids nor a
/// decision (no B3 header at all, or only `X-B3-Flags: 0`).
///
/// `X-B3-TraceId` (16 or 32 digits) and `X-B3-SpanId` come together, or neither
/// does; `X-B3-ParentSpanId` is checked and dropped. `X-B3-Sampled` is `1` or
/// `0`, also `true` or `false`, which B3 lets a lenient reader accept; absent, the
/// decision is deferred and decodes as [`TraceFlags::NOT_SAMPLED`].
/// `X-B3-Flags: 1` is debug, whatever `X-B3-Sampled` says; `0` is no flag.
///
/// ```
/// use palisade_context::trace::{self, B3Header};
///
/// let headers = [
///     ("X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124"),
///     ("X-B3-SpanId", "a2fb4a1d1a96d312"),
///     ("X-B3-Sampled", "1"),
///     ("content-type", "text/plain"),
/// ];
/// let Some(B3Header::Trace(ctx)) = trace::decode_b3_multi(headers).unwrap() else {
///     panic!("a trace");
/// };
/// assert_eq!(ctx.span_id().to_string(), "a2fb4a1d1a96d312");
/// assert!(ctx.flags().is_sampled());
/// assert_eq!(trace::decode_b3_multi([("accept", "*/*")]).unwrap(), None);
/// ```
pub fn decode_b3_multi<'a, I>(headers: I) -> Result<Option<B3Header>, TraceHeaderError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut found: [Option<&str>; 5] = [None; 5];
    const NAMES: [&str; 5] = [
        X_B3_TRACE_ID,
        X_B3_SPAN_ID,
        X_B3_PARENT_SPAN_ID,
        X_B3_SAMPLED,
        X_B3_FLAGS,
    ];
    for (name, value) in headers {
        if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            found[i].get_or_insert(value);
        }
    }
    let [trace_id, span_id, parent, sampled, flags] = found;

    let mut decision = None;
    if let Some(value) = sampled {
        decision = Some(match trim_ows(value) {
            "1" | "true" => TraceFlags::SAMPLED,
            "0" | "false" => TraceFlags::NOT_SAMPLED,
            _ => {
                return Err(TraceHeaderError::new(
                    X_B3_SAMPLED,
                    value,
                    Reason::B3Sampled,
                ));
            }
        });
    }
    if let Some(value) = flags {
        match trim_ows(value) {
            "1" => decision = Some(TraceFlags::DEBUG),
            "0" => {}
            _ => return Err(TraceHeaderError::new(X_B3_FLAGS, value, Reason::B3Flags)),
        }
    }

    let ids = match (trace_id, span_id) {
        (Some(trace_id), Some(span_id)) => Some((trace_id, span_id)),
        (None, None) if parent.is_none() => None,
        (Some(_), None) => return Err(TraceHeaderError::missing(X_B3_SPAN_ID)),
        (None, _) => return Err(TraceHeaderError::missing(X_B3_TRACE_ID)),
    };
    let Some((trace_id, span_id)) = ids else {
        return Ok(decision.map(B3Header::Decision));
    };
    let id_err = |field, value, zero| {
        let reason = match (zero, field) {
            (true, _) => Reason::Zero,
            (false, X_B3_TRACE_ID) => Reason::Hex16Or32,
            (false, _) => Reason::Hex16,
        };
        TraceHeaderError::new(field, value, reason)
    };
    let trace = parse_b3_trace_id(trim_ows(trace_id))
        .map_err(|zero| id_err(X_B3_TRACE_ID, trace_id, zero))?;
    let span =
        parse_b3_span_id(trim_ows(span_id)).map_err(|zero| id_err(X_B3_SPAN_ID, span_id, zero))?;
    if let Some(parent) = parent {
        parse_b3_span_id(trim_ows(parent))
            .map_err(|zero| id_err(X_B3_PARENT_SPAN_ID, parent, zero))?;
    }
    let flags = decision.unwrap_or(TraceFlags::NOT_SAMPLED);
    Ok(Some(B3Header::Trace(TraceContext::new(trace, span, flags))))
}

fn b3_sampling(flags: TraceFlags) -> char {
    if flags.is_debug() {
        'd'
    } else if flags.is_sampled() {
        '1'
    } else {
        '0'
    }
}

fn parse_b3_sampling(value: &str) -> Option<TraceFlags> {
    match value {
        "0" => Some(TraceFlags::NOT_SAMPLED),
        "1" => Some(TraceFlags::SAMPLED),
        "d" => Some(TraceFlags::DEBUG),
        _ => None,
    }
}

/// A B3 trace id: 16 or 32 lowercase hex digits, not all zero. The error says
/// whether the id was all zero.
fn parse_b3_trace_id(value: &str) -> Result<TraceId, bool> {
    if value.len() != 16 && value.len() != 32 {
        return Err(false);
    }
    let id = parse_hex(value.as_bytes()).ok_or(false)?;
    TraceId::from_u128(id).ok_or(true)
}

/// A B3 span id: 16 lowercase hex digits, not all zero. The error says whether
/// the id was all zero.
fn parse_b3_span_id(value: &str) -> Result<SpanId, bool> {
    if value.len() != 16 {
        return Err(false);
    }
    let id = parse_hex(value.as_bytes()).ok_or(false)?;
    SpanId::from_u128(id).ok_or(true)
}

fn valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    bytes.len() <= TraceState::MAX_KEY_LEN
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
        })
}

fn valid_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TraceState::MAX_VALUE_LEN
        && bytes.last() != Some(&b' ')
        && bytes
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

/// Optional whitespace (RFC 9110 `OWS`: spaces and horizontal tabs) trimmed.
#[inline]
fn trim_ows(value: &str) -> &str {
    if !matches!(value.as_bytes(), [b' ' | b'\t', ..] | [.., b' ' | b'\t']) {
        return value;
    }
    let bytes = value.as_bytes();
    let trimmed = trim_ows_bytes(bytes);
    let start = bytes.len() - trim_ows_start(bytes).len();
    // Spaces and tabs are ASCII: both ends are character boundaries.
    value.get(start..start + trimmed.len()).unwrap_or_default()
}

/// Leading optional whitespace trimmed.
#[inline]
fn trim_ows_start(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    value
}

/// [`trim_ows`] of bytes.
#[inline]
fn trim_ows_bytes(value: &[u8]) -> &[u8] {
    match value {
        [b' ' | b'\t', ..] | [.., b' ' | b'\t'] => trim_ows_ends(value),
        _ => value,
    }
}

fn trim_ows_ends(value: &[u8]) -> &[u8] {
    let mut value = trim_ows_start(value);
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// The value of 1 to 32 lowercase hex digits; `None` for anything else.
fn parse_hex(digits: &[u8]) -> Option<u128> {
    if digits.is_empty() || digits.len() > 32 {
        return None;
    }
    let mut value = 0u128;
    for &b in digits {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

/// Appends the low `digits` hex digits of `value`, lowercase, zero-padded.
fn push_hex(out: &mut String, value: u128, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(char::from(HEX[((value >> (i * 4)) & 0xf) as usize]));
    }
}

/// A trace or request id header value that is not in its format.
///
/// It names the header and repeats the start of the bad value (at most 32
/// characters, so a hostile header cannot blow up logs). At the inbound edge it
/// starts a new trace, never fails the request (see [the module docs](self#at-the-inbound-edge)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceHeaderError {
    field: &'static str,
    value: String,
    reason: Reason,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Reason {
    Empty,
    Version,
    VersionFf,
    Length00,
    TooShort,
    TraceId,
    ZeroTraceId,
    SpanId,
    ZeroSpanId,
    Flags,
    AfterFlags,
    Member,
    Key,
    Value,
    DuplicateKey,
    B3Form,
    B3TraceId,
    B3SpanId,
    B3ZeroSpanId,
    B3ParentSpanId,
    B3Sampling,
    B3Sampled,
    B3Flags,
    Hex16Or32,
    Hex16,
    Zero,
    /// A header another one needs is absent.
    Missing,
    RequestIdChars,
    RequestIdLen,
}

/// How much of a bad value an error repeats.
const SHOWN: usize = 32;

impl TraceHeaderError {
    #[cold]
    fn new(field: &'static str, value: &str, reason: Reason) -> Self {
        let mut shown: String = value.chars().take(SHOWN).collect();
        if value.chars().nth(SHOWN).is_some() {
            shown.push('…');
        }
        TraceHeaderError {
            field,
            value: shown,
            reason,
        }
    }

    fn missing(field: &'static str) -> Self {
        TraceHeaderError::new(field, "", Reason::Missing)
    }

    /// The header that was being decoded, or that is missing, lowercase:
    /// `traceparent`, `tracestate`, `b3`, `x-b3-traceid` and so on, and
    /// `x-request-id`.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for TraceHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = match self.reason {
            Reason::Empty => "is empty",
            Reason::Version => "must start with a version of 2 lowercase hex digits and a '-'",
            Reason::VersionFf => "has version ff, which is invalid",
            Reason::Length00 => {
                "must be exactly 55 characters in version 00: 00-<32 hex>-<16 hex>-<2 hex>"
            }
            Reason::TooShort => "must be at least 55 characters",
            Reason::TraceId => "must have a trace id of 32 lowercase hex digits followed by a '-'",
            Reason::ZeroTraceId => "has an all-zero trace id, which is invalid",
            Reason::SpanId => "must have a parent id of 16 lowercase hex digits followed by a '-'",
            Reason::ZeroSpanId => "has an all-zero parent id, which is invalid",
            Reason::Flags => "must have flags of 2 lowercase hex digits",
            Reason::AfterFlags => "must end after the flags or continue with a '-'",
            Reason::Member => "must be a list of key=value members separated by ','",
            Reason::Key => {
                "must have keys of 1 to 256 lowercase letters, digits, '_', '-', '*', '/' or '@', starting with a letter or digit"
            }
            Reason::Value => {
                "must have values of 1 to 256 printable ASCII characters other than ',' and '=', not ending in a space"
            }
            Reason::DuplicateKey => "must not repeat a key",
            Reason::B3Form => {
                "must be {traceid}-{spanid}[-{sampling}[-{parentspanid}]] or a lone sampling state: 0, 1 or d"
            }
            Reason::B3TraceId => "must have a trace id of 16 or 32 lowercase hex digits",
            Reason::B3SpanId => "must have a span id of 16 lowercase hex digits",
            Reason::B3ZeroSpanId => "has an all-zero span id, which is invalid",
            Reason::B3ParentSpanId => "must have a parent span id of 16 lowercase hex digits",
            Reason::B3Sampling => "must have a sampling state of 0, 1 or d",
            Reason::B3Sampled => "must be 1 or 0 (or true or false)",
            Reason::B3Flags => "must be 1 (debug) or 0",
            Reason::Hex16Or32 => "must be 16 or 32 lowercase hex digits",
            Reason::Hex16 => "must be 16 lowercase hex digits",
            Reason::Zero => "is all zeros, which is invalid",
            Reason::RequestIdChars => {
                "must be visible ASCII characters ('!' to '~'), no spaces or control characters"
            }
            Reason::RequestIdLen => "must be at most 128 characters",
            Reason::Missing => {
                let other = if self.field == X_B3_TRACE_ID {
                    "x-b3-spanid or x-b3-parentspanid"
                } else {
                    "x-b3-traceid"
                };
                return write!(f, "missing {} header: {other} is present", self.field);
            }
        };
        write!(
            f,
            "invalid {} value {:?}: {}",
            self.field, self.value, expected
        )
    }
}

impl Error for TraceHeaderError {}

/// Conversions to and from OpenTelemetry's span context (the `opentelemetry`
/// feature), so that a trace read from the wire and the spans an OpenTelemetry
/// pipeline exports share their ids.
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
impl TraceContext {
    /// This trace context as OpenTelemetry's, `remote` when it came from another
    /// process. The state is carried over when OpenTelemetry accepts it, and
    /// dropped otherwise.
    ///
    /// ```
    /// use palisade_context::trace::decode_traceparent;
    ///
    /// let ctx = decode_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// let otel = ctx.to_span_context(true);
    /// assert_eq!(otel.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    /// assert!(otel.is_sampled() && otel.is_remote());
    /// let back = palisade_context::trace::TraceContext::from_span_context(&otel).unwrap();
    /// assert_eq!(back.trace_id(), ctx.trace_id());
    /// ```
    pub fn to_span_context(&self, remote: bool) -> opentelemetry::trace::SpanContext {
        use opentelemetry::trace::{SpanContext, SpanId as OtelSpanId, TraceFlags as OtelFlags};
        use opentelemetry::trace::{TraceId as OtelTraceId, TraceState as OtelState};
        let state = if self.state.is_empty() {
            OtelState::default()
        } else {
            self.state.as_str().parse().unwrap_or_default()
        };
        SpanContext::new(
            OtelTraceId::from_bytes(self.trace_id.to_bytes()),
            OtelSpanId::from_bytes(self.span_id.to_bytes()),
            OtelFlags::new(self.flags.to_w3c()),
            remote,
            state,
        )
    }

    /// OpenTelemetry's span context as a trace context, or `None` for an invalid
    /// one (an all-zero id: no span).
    pub fn from_span_context(span: &opentelemetry::trace::SpanContext) -> Option<TraceContext> {
        let trace_id = TraceId::from_bytes(span.trace_id().to_bytes())?;
        let span_id = SpanId::from_bytes(span.span_id().to_bytes())?;
        let flags = TraceFlags::from_w3c(span.trace_flags().to_u8());
        let ctx = TraceContext::new(trace_id, span_id, flags);
        let header = span.trace_state().header();
        Some(match decode_tracestate(&header) {
            Ok(state) if !header.is_empty() => ctx.with_state(state),
            _ => ctx,
        })
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
mod tests {
    use super::*;

    /// The word-at-a-time hex codecs against the obvious ones: every byte in
    /// every position, and a spread of values.
    #[test]
    fn hex_words_agree_with_the_byte_at_a_time_codecs() {
        for position in 0..8 {
            for b in 0..=255u8 {
                let mut digits = *b"0123abcd";
                digits[position] = b;
                let expected = parse_hex(&digits).map(|v| v as u32);
                assert_eq!(hex8(digits), expected, "{digits:?}");
            }
        }
        let mut value = 0x0123_4567_89ab_cdefu64;
        for _ in 0..1000 {
            let word = value as u32;
            assert_eq!(hex_of_u32(word), *format!("{word:08x}").as_bytes());
            let digits = format!("{value:016x}");
            assert_eq!(hex_u64(digits.as_bytes()), Some(value));
            value = value.rotate_left(7).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
        }
        for word in [0, 1, 9, 10, 15, 16, 0x9999_9999, 0xaaaa_aaaa, u32::MAX] {
            assert_eq!(hex_of_u32(word), *format!("{word:08x}").as_bytes());
        }
        assert_eq!(hex_u64(b"0123456789abcdeF"), None);
        assert_eq!(hex_u64(b"0123456789abcde"), None);
    }

    fn trace_id(hex: &str) -> TraceId {
        TraceId::from_u128(parse_hex(hex.as_bytes()).unwrap()).unwrap()
    }

    fn span_id(hex: &str) -> SpanId {
        SpanId::from_u128(parse_hex(hex.as_bytes()).unwrap()).unwrap()
    }

    /// The W3C examples: sampled and not sampled.
    #[test]
    fn traceparent_spec_examples() {
        let ctx =
            decode_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(ctx.trace_id(), trace_id("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(ctx.span_id(), span_id("00f067aa0ba902b7"));
        assert!(ctx.flags().is_sampled());
        assert!(ctx.state().is_empty());
        assert_eq!(
            encode_traceparent(&ctx),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );

        let ctx =
            decode_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!ctx.flags().is_sampled());
        assert_eq!(
            encode_traceparent(&ctx),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }

    #[test]
    fn traceparent_flags_keep_only_the_sampled_bit() {
        // "a flag 00000001 could be encoded as 01 in hex, or 09 in hex if present
        // with the flag 00001000": mask, and write the reserved bits as zero.
        for (flags, sampled) in [("09", true), ("ff", true), ("fe", false), ("02", false)] {
            let value = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}");
            let ctx = decode_traceparent(&value).unwrap();
            assert_eq!(ctx.flags().is_sampled(), sampled, "{value}");
            let written = encode_traceparent(&ctx);
            assert!(
                written.ends_with(if sampled { "-01" } else { "-00" }),
                "{written}"
            );
        }
    }

    #[test]
    fn traceparent_ignores_surrounding_whitespace() {
        for value in [
            " 00-12345678901234567890123456789012-1234567890123456-01",
            "\t00-12345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456-01 ",
            "00-12345678901234567890123456789012-1234567890123456-01\t",
            "\t 00-12345678901234567890123456789012-1234567890123456-01 \t",
        ] {
            let ctx = decode_traceparent(value).unwrap();
            assert_eq!(ctx.trace_id(), trace_id("12345678901234567890123456789012"));
        }
    }

    /// A later version: the first four fields, more fields after a '-' ignored.
    #[test]
    fn traceparent_future_versions() {
        for value in [
            "cc-12345678901234567890123456789012-1234567890123456-01",
            "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            "01-12345678901234567890123456789012-1234567890123456-01-",
        ] {
            let ctx = decode_traceparent(value).unwrap();
            assert_eq!(ctx.trace_id(), trace_id("12345678901234567890123456789012"));
            assert_eq!(ctx.span_id(), span_id("1234567890123456"));
            assert!(ctx.flags().is_sampled());
            // Written back as the highest version known: 00.
            assert_eq!(
                encode_traceparent(&ctx),
                "00-12345678901234567890123456789012-1234567890123456-01"
            );
        }
    }

    /// The invalid values of the W3C test suite, and a few more.
    #[test]
    fn traceparent_invalid() {
        let cases: &[(&str, &str)] = &[
            ("", "is empty"),
            ("  ", "is empty"),
            // Version 00 refuses anything extra.
            (
                "00-12345678901234567890123456789012-1234567890123456-01.",
                "55 characters",
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
                "55 characters",
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-01-",
                "55 characters",
            ),
            // A later version continues only after a '-'.
            (
                "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
                "continue with a '-'",
            ),
            (
                "cc-12345678901234567890123456789012-1234567890123456-0",
                "at least 55",
            ),
            (
                "ff-12345678901234567890123456789012-1234567890123456-01",
                "version ff",
            ),
            (
                ".0-12345678901234567890123456789012-1234567890123456-01",
                "version",
            ),
            (
                "0.-12345678901234567890123456789012-1234567890123456-01",
                "version",
            ),
            (
                "000-12345678901234567890123456789012-1234567890123456-01",
                "version",
            ),
            (
                "0000-12345678901234567890123456789012-1234567890123456-01",
                "version",
            ),
            (
                "0-12345678901234567890123456789012-1234567890123456-01",
                "version",
            ),
            (
                "0A-12345678901234567890123456789012-1234567890123456-01",
                "version",
            ),
            (
                "00-00000000000000000000000000000000-1234567890123456-01",
                "all-zero trace id",
            ),
            (
                "00-.2345678901234567890123456789012-1234567890123456-01",
                "trace id",
            ),
            (
                "00-1234567890123456789012345678901.-1234567890123456-01",
                "trace id",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-123456789012345678901234567890123-1234567890123456-01",
                "55 characters",
            ),
            (
                "00-1234567890123456789012345678901-1234567890123456-01",
                "55 characters",
            ),
            // Same length, the fields shifted.
            (
                "00-123456789012345678901234567890123-123456789012345-01",
                "trace id",
            ),
            (
                "00-1234567890123456789012345678901-12345678901234567-01",
                "trace id",
            ),
            (
                "00-12345678901234567890123456789012-0000000000000000-01",
                "all-zero parent id",
            ),
            (
                "00-12345678901234567890123456789012-.234567890123456-01",
                "parent id",
            ),
            (
                "00-12345678901234567890123456789012-123456789012345.-01",
                "parent id",
            ),
            (
                "00-12345678901234567890123456789012-00F067AA0BA902B7-01",
                "parent id",
            ),
            (
                "00-12345678901234567890123456789012-12345678901234567-01",
                "55 characters",
            ),
            (
                "00-12345678901234567890123456789012-123456789012345-01",
                "55 characters",
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-.0",
                "flags",
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-0.",
                "flags",
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-0A",
                "flags",
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-001",
                "55 characters",
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-1",
                "55 characters",
            ),
            (
                "00_12345678901234567890123456789012_1234567890123456_01",
                "version",
            ),
            (
                "00-12345678901234567890123456789012_1234567890123456-01",
                "trace id",
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456_01",
                "parent id",
            ),
            // Two fields joined as one header: two traceparent headers.
            (
                "00-12345678901234567890123456789011-1234567890123456-01,00-12345678901234567890123456789012-1234567890123456-01",
                "55 characters",
            ),
            (
                "00-１2345678901234567890123456789012-1234567890123456-01",
                "55 characters",
            ),
        ];
        for (value, expected) in cases {
            let err = decode_traceparent(value).unwrap_err();
            assert_eq!(err.field(), "traceparent");
            let text = err.to_string();
            assert!(
                text.starts_with("invalid traceparent value"),
                "{value}: {text}"
            );
            assert!(text.contains(expected), "{value}: {text}");
        }
        let long = "0".repeat(10_000);
        assert!(decode_traceparent(&long).unwrap_err().to_string().len() < 200);
    }

    #[test]
    fn tracestate_spec_examples() {
        let state = decode_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").unwrap();
        assert_eq!(state.as_str(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        assert_eq!(state.get("rojo"), Some("00f067aa0ba902b7"));
        assert_eq!(state.get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(state.get("ro"), None);
        assert_eq!(state.to_string(), state.as_str());
    }

    #[test]
    fn tracestate_empty_and_whitespace() {
        for value in ["", " ", ",", " , ,\t", ",,,"] {
            let state = decode_tracestate(value).unwrap();
            assert!(state.is_empty(), "{value:?}");
            assert_eq!(state.as_str(), "");
        }
        // The test suite's OWS cases: members trimmed, values kept.
        for value in [
            "foo=1 \t , \t bar=2, \t baz=3",
            "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
            ",foo=1,,bar=2, ,baz=3,",
        ] {
            assert_eq!(
                decode_tracestate(value).unwrap().as_str(),
                "foo=1,bar=2,baz=3"
            );
        }
        for value in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
            assert_eq!(decode_tracestate(value).unwrap().as_str(), "foo=1");
        }
        // A value's inner and leading spaces are part of it.
        assert_eq!(
            decode_tracestate("foo= a b").unwrap().get("foo"),
            Some(" a b")
        );
        // Two fields joined in order, one of them empty.
        assert_eq!(decode_tracestate("foo=1,").unwrap().as_str(), "foo=1");
        assert_eq!(decode_tracestate(",foo=1").unwrap().as_str(), "foo=1");
    }

    #[test]
    fn tracestate_all_allowed_characters() {
        let key: String = ('a'..='z').chain('0'..='9').chain("_-*/".chars()).collect();
        let value: String = (0x20u8..=0x7e)
            .filter(|b| *b != b',' && *b != b'=')
            .map(char::from)
            .collect();
        for key in [
            key.clone(),
            key.clone() + "@a-z0-9_-*/",
            "0abc".into(),
            "t@v".into(),
        ] {
            let state = decode_tracestate(&format!("{key}={value}")).unwrap();
            assert_eq!(state.get(&key), Some(value.as_str()));
        }
    }

    #[test]
    fn tracestate_invalid_is_dropped_whole() {
        let cases: &[(&str, &str)] = &[
            ("foo=1,foo=1", "repeat a key"),
            ("foo=1,foo=2", "repeat a key"),
            ("foo=1,bar=2,foo=3", "repeat a key"),
            ("foo =1", "keys"),
            ("FOO=1", "keys"),
            ("foo.bar=1", "keys"),
            ("=1", "keys"),
            ("_foo=1", "keys"),
            ("@foo=1,bar=2", "keys"),
            ("foo=bar=baz", "values"),
            ("foo=,bar=3", "values"),
            ("foo=\u{7f}", "values"),
            ("foo=é", "values"),
            ("foo=a\tb", "values"),
            ("foo", "key=value"),
            ("foo=1,bar", "key=value"),
        ];
        for (value, expected) in cases {
            let err = decode_tracestate(value).unwrap_err();
            assert_eq!(err.field(), "tracestate");
            let text = err.to_string();
            assert!(
                text.starts_with("invalid tracestate value"),
                "{value}: {text}"
            );
            assert!(text.contains(expected), "{value}: {text}");
        }
        // Key and value lengths: 256 allowed, 257 not.
        let key = "z".repeat(256);
        assert!(decode_tracestate(&format!("{key}=1")).is_ok());
        assert!(decode_tracestate(&format!("{key}z=1")).is_err());
        let value = "v".repeat(256);
        assert!(decode_tracestate(&format!("k={value}")).is_ok());
        assert!(decode_tracestate(&format!("k={value}v")).is_err());
    }

    #[test]
    fn tracestate_limits_truncate_from_the_end() {
        let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
        // 32 members: kept whole.
        let value = members[..32].join(",");
        let state = decode_tracestate(&value).unwrap();
        assert_eq!(state.as_str(), value);
        assert_eq!(state.get("bar01"), Some("01"));
        // 33: the last one goes.
        let state = decode_tracestate(&members.join(",")).unwrap();
        assert_eq!(state.as_str(), value);
        assert_eq!(state.get("bar33"), None);

        // Over 512 characters: members from the end until it fits.
        let members: Vec<String> = (0..10)
            .map(|i| format!("k{i}={}", "v".repeat(60)))
            .collect();
        let value = members.join(",");
        assert_eq!(value.len(), 10 * 63 + 9);
        let state = decode_tracestate(&value).unwrap();
        assert_eq!(state.as_str(), members[..8].join(","));
        assert!(state.as_str().len() <= TraceState::MAX_LEN);

        // Exactly 512: kept whole.
        let exact = format!("a={},b={}", "x".repeat(254), "y".repeat(253));
        assert_eq!(exact.len(), 512);
        assert_eq!(decode_tracestate(&exact).unwrap().as_str(), exact);

        // Over a limit, the members over 128 characters go first, even at the front.
        let long = format!("long={}", "l".repeat(200));
        let short: Vec<String> = (0..31).map(|i| format!("s{i}=1")).collect();
        let value = format!("{long},{},{long}x,last=1", short.join(","));
        let state = decode_tracestate(&value).unwrap();
        assert_eq!(state.as_str(), format!("{},last=1", short.join(",")));

        // Under the limits, long members stay.
        let value = format!("{long},a=1");
        assert_eq!(decode_tracestate(&value).unwrap().as_str(), value);

        // What truncation drops is not checked; what it keeps is.
        let many: Vec<String> = (0..40).map(|i| format!("x{i}=1")).collect();
        let value = format!("a=1,BAD,{}", many.join(","));
        assert_eq!(decode_tracestate(&value).unwrap_err().field(), "tracestate");
        let value = format!("{},{},BAD", members.join(","), "y=2");
        assert_eq!(
            decode_tracestate(&value).unwrap().as_str(),
            members[..8].join(",")
        );
    }

    #[test]
    fn child_keeps_trace_flags_and_state() {
        let parent = decode_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap()
            .with_state(decode_tracestate("rojo=00f067aa0ba902b7").unwrap());
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_eq!(child.flags(), parent.flags());
        assert_eq!(child.state(), parent.state());
        assert_ne!(child.span_id(), parent.span_id());
        assert_ne!(child.child().span_id(), child.span_id());
    }

    #[test]
    fn new_root_is_random_and_valid() {
        let a = TraceContext::new_root(TraceFlags::NOT_SAMPLED);
        let b = TraceContext::new_root(TraceFlags::SAMPLED);
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(a.span_id(), b.span_id());
        assert!(!a.flags().is_sampled());
        assert!(b.flags().is_sampled());
        assert_eq!(decode_traceparent(&encode_traceparent(&a)).unwrap(), a);
    }

    #[test]
    fn ids_and_flags() {
        assert_eq!(TraceId::from_bytes([0; 16]), None);
        assert_eq!(SpanId::from_bytes([0; 8]), None);
        let mut bytes = [0; 16];
        bytes[15] = 1;
        let id = TraceId::from_bytes(bytes).unwrap();
        assert_eq!(id.to_bytes(), bytes);
        assert_eq!(id.to_string(), "00000000000000000000000000000001");
        assert_eq!(
            format!("{id:?}"),
            "TraceId(00000000000000000000000000000001)"
        );
        let span = SpanId::from_bytes([0xab, 0, 0, 0, 0, 0, 0, 0xcd]).unwrap();
        assert_eq!(span.to_string(), "ab000000000000cd");
        assert_eq!(span.to_bytes(), [0xab, 0, 0, 0, 0, 0, 0, 0xcd]);

        assert_eq!(TraceFlags::default(), TraceFlags::NOT_SAMPLED);
        assert!(TraceFlags::DEBUG.is_sampled() && TraceFlags::DEBUG.is_debug());
        assert!(!TraceFlags::SAMPLED.is_debug());
        assert_eq!(TraceFlags::DEBUG.to_w3c(), 0x01);
        assert_eq!(TraceFlags::from_w3c(0xff), TraceFlags::SAMPLED);
        assert_eq!(TraceFlags::from_w3c(0x80), TraceFlags::NOT_SAMPLED);
    }

    #[test]
    fn debug_output_is_readable() {
        let ctx = decode_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap()
            .with_state(decode_tracestate("congo=t61rcWkgMzE").unwrap());
        let text = format!("{ctx:?}");
        assert!(
            text.contains("trace_id: 4bf92f3577b34da6a3ce929d0e0e4736"),
            "{text}"
        );
        assert!(text.contains("span_id: 00f067aa0ba902b7"), "{text}");
        assert!(text.contains("sampled: true"), "{text}");
        assert!(text.contains("\"congo=t61rcWkgMzE\""), "{text}");
    }
    /// The B3 spec's examples.
    #[test]
    fn b3_single_spec_examples() {
        let B3Header::Trace(ctx) =
            decode_b3("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")
                .unwrap()
        else {
            panic!("a trace");
        };
        assert_eq!(ctx.trace_id(), trace_id("80f198ee56343ba864fe8b2a57d3eff7"));
        assert_eq!(ctx.span_id(), span_id("e457b5a2e4d86bd1"));
        assert_eq!(ctx.flags(), TraceFlags::SAMPLED);
        assert!(ctx.state().is_empty());
        assert_eq!(
            encode_b3(&ctx),
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
        );

        let B3Header::Trace(ctx) =
            decode_b3("80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90-d").unwrap()
        else {
            panic!("a trace");
        };
        assert_eq!(ctx.flags(), TraceFlags::DEBUG);
        assert_eq!(
            encode_b3(&ctx),
            "80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90-d"
        );
        // Debug travels in traceparent as sampled.
        assert!(encode_traceparent(&ctx).ends_with("-01"));

        let deny = decode_b3("80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90-0").unwrap();
        assert_eq!(deny.flags(), TraceFlags::NOT_SAMPLED);
        // Deferred: not sampled.
        let defer = decode_b3("80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90").unwrap();
        assert_eq!(defer.flags(), TraceFlags::NOT_SAMPLED);
        let B3Header::Trace(ctx) = defer else {
            panic!("a trace")
        };
        assert_eq!(
            encode_b3(&ctx),
            "80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90-0"
        );
    }

    #[test]
    fn b3_single_decision_only() {
        assert_eq!(
            decode_b3("0").unwrap(),
            B3Header::Decision(TraceFlags::NOT_SAMPLED)
        );
        assert_eq!(
            decode_b3("1").unwrap(),
            B3Header::Decision(TraceFlags::SAMPLED)
        );
        assert_eq!(
            decode_b3(" d ").unwrap(),
            B3Header::Decision(TraceFlags::DEBUG)
        );
        let ctx = decode_b3("1").unwrap().into_trace_context();
        assert!(ctx.flags().is_sampled());
        let other = decode_b3("1").unwrap().into_trace_context();
        assert_ne!(ctx.trace_id(), other.trace_id());
    }

    #[test]
    fn b3_single_64_bit_trace_id() {
        let B3Header::Trace(ctx) = decode_b3("48485a3953bb6124-a2fb4a1d1a96d312-1").unwrap() else {
            panic!("a trace");
        };
        assert_eq!(ctx.trace_id(), trace_id("48485a3953bb6124"));
        assert_eq!(
            ctx.trace_id().to_string(),
            "000000000000000048485a3953bb6124"
        );
        assert_eq!(
            encode_b3(&ctx),
            "000000000000000048485a3953bb6124-a2fb4a1d1a96d312-1"
        );
        assert_eq!(
            encode_traceparent(&ctx),
            "00-000000000000000048485a3953bb6124-a2fb4a1d1a96d312-01"
        );
    }

    #[test]
    fn b3_single_invalid() {
        let cases: &[(&str, &str)] = &[
            ("", "is empty"),
            ("\t", "is empty"),
            ("2", "lone sampling state"),
            ("D", "lone sampling state"),
            ("-", "lone sampling state"),
            ("80f198ee56343ba864fe8b2a57d3eff7", "lone sampling state"),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-x",
                "lone sampling state",
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff-e457b5a2e4d86bd1-1",
                "16 or 32",
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff70-e457b5a2e4d86bd1-1",
                "16 or 32",
            ),
            (
                "80F198EE56343BA864FE8B2A57D3EFF7-e457b5a2e4d86bd1-1",
                "16 or 32",
            ),
            ("48485a3953bb612-a2fb4a1d1a96d312-1", "16 or 32"),
            (
                "00000000000000000000000000000000-e457b5a2e4d86bd1-1",
                "all-zero trace id",
            ),
            ("0000000000000000-e457b5a2e4d86bd1-1", "all-zero trace id"),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd-1",
                "span id of 16",
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-E457B5A2E4D86BD1-1",
                "span id of 16",
            ),
            ("80f198ee56343ba864fe8b2a57d3eff7--1", "span id of 16"),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1",
                "all-zero span id",
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-",
                "sampling state of 0, 1 or d",
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-2",
                "sampling state of 0, 1 or d",
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-true",
                "sampling state",
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-",
                "parent span id",
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b9",
                "parent span id",
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-0000000000000000",
                "all-zero span id",
            ),
        ];
        for (value, expected) in cases {
            let err = decode_b3(value).unwrap_err();
            assert_eq!(err.field(), "b3");
            let text = err.to_string();
            assert!(text.starts_with("invalid b3 value"), "{value}: {text}");
            assert!(text.contains(expected), "{value}: {text}");
        }
    }

    #[test]
    fn b3_multi_spec_examples() {
        let headers = [
            ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("X-B3-ParentSpanId", "05e3ac9a4f6e3b90"),
            ("X-B3-SpanId", "e457b5a2e4d86bd1"),
            ("X-B3-Sampled", "1"),
        ];
        let Some(B3Header::Trace(ctx)) = decode_b3_multi(headers).unwrap() else {
            panic!("a trace");
        };
        assert_eq!(ctx.trace_id(), trace_id("80f198ee56343ba864fe8b2a57d3eff7"));
        assert_eq!(ctx.span_id(), span_id("e457b5a2e4d86bd1"));
        assert_eq!(ctx.flags(), TraceFlags::SAMPLED);
        assert_eq!(
            encode_b3_multi(&ctx),
            [
                (
                    "x-b3-traceid",
                    "80f198ee56343ba864fe8b2a57d3eff7".to_owned()
                ),
                ("x-b3-spanid", "e457b5a2e4d86bd1".to_owned()),
                ("x-b3-sampled", "1".to_owned()),
            ]
        );
        // Debug: flags, and no sampled header.
        let debug = ctx.clone().with_flags(TraceFlags::DEBUG);
        assert_eq!(encode_b3_multi(&debug)[2], ("x-b3-flags", "1".to_owned()));
        let deny = ctx.with_flags(TraceFlags::NOT_SAMPLED);
        assert_eq!(encode_b3_multi(&deny)[2], ("x-b3-sampled", "0".to_owned()));
    }

    #[test]
    fn b3_multi_names_decisions_and_first_value() {
        let ids = [
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("X-B3-SPANID", "a2fb4a1d1a96d312"),
        ];
        let flags = |extra: &[(&'static str, &'static str)]| {
            let headers: Vec<_> = ids.iter().chain(extra).copied().collect();
            decode_b3_multi(headers).unwrap().unwrap().flags()
        };
        assert_eq!(flags(&[]), TraceFlags::NOT_SAMPLED);
        assert_eq!(flags(&[("X-B3-Sampled", "1")]), TraceFlags::SAMPLED);
        assert_eq!(flags(&[("x-b3-sampled", "0")]), TraceFlags::NOT_SAMPLED);
        assert_eq!(flags(&[("X-B3-Sampled", "true")]), TraceFlags::SAMPLED);
        assert_eq!(flags(&[("X-B3-Sampled", "false")]), TraceFlags::NOT_SAMPLED);
        assert_eq!(flags(&[("X-B3-Flags", "1")]), TraceFlags::DEBUG);
        assert_eq!(
            flags(&[("X-B3-Sampled", "0"), ("X-B3-Flags", "1")]),
            TraceFlags::DEBUG
        );
        assert_eq!(
            flags(&[("X-B3-Flags", "0"), ("X-B3-Sampled", "1")]),
            TraceFlags::SAMPLED
        );
        // The first value wins.
        assert_eq!(
            flags(&[("X-B3-Sampled", "1"), ("X-B3-Sampled", "0")]),
            TraceFlags::SAMPLED
        );
        let mut twice = ids.to_vec();
        twice.push(("X-B3-SpanId", "not an id"));
        assert!(decode_b3_multi(twice).is_ok());
        // 64-bit trace ids and surrounding whitespace.
        let Some(B3Header::Trace(ctx)) = decode_b3_multi([
            ("X-B3-TraceId", " 48485a3953bb6124"),
            ("X-B3-SpanId", "a2fb4a1d1a96d312\t"),
        ])
        .unwrap() else {
            panic!("a trace");
        };
        assert_eq!(ctx.trace_id(), trace_id("48485a3953bb6124"));

        // A decision alone, or nothing.
        assert_eq!(
            decode_b3_multi([("X-B3-Sampled", "0")]).unwrap(),
            Some(B3Header::Decision(TraceFlags::NOT_SAMPLED))
        );
        assert_eq!(
            decode_b3_multi([("X-B3-Flags", "1")]).unwrap(),
            Some(B3Header::Decision(TraceFlags::DEBUG))
        );
        assert_eq!(decode_b3_multi([("X-B3-Flags", "0")]).unwrap(), None);
        assert_eq!(
            decode_b3_multi([("b3", "1"), ("traceparent", "x")]).unwrap(),
            None
        );
        assert_eq!(decode_b3_multi(std::iter::empty()).unwrap(), None);
    }

    #[test]
    fn b3_multi_invalid() {
        let tid = ("X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124");
        let sid = ("X-B3-SpanId", "a2fb4a1d1a96d312");
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Headers<'_>, &str, &str)] = &[
            (
                &[tid],
                "x-b3-spanid",
                "missing x-b3-spanid header: x-b3-traceid is present",
            ),
            (
                &[tid, ("X-B3-Sampled", "1")],
                "x-b3-spanid",
                "missing x-b3-spanid",
            ),
            (&[sid], "x-b3-traceid", "missing x-b3-traceid header"),
            (
                &[("X-B3-ParentSpanId", "a2fb4a1d1a96d312")],
                "x-b3-traceid",
                "missing x-b3-traceid",
            ),
            (
                &[("X-B3-TraceId", "463ac35c9f6413ad48485a3953bb612"), sid],
                "x-b3-traceid",
                "16 or 32",
            ),
            (&[("X-B3-TraceId", ""), sid], "x-b3-traceid", "16 or 32"),
            (
                &[("X-B3-TraceId", "0000000000000000"), sid],
                "x-b3-traceid",
                "all zeros",
            ),
            (
                &[tid, ("X-B3-SpanId", "A2FB4A1D1A96D312")],
                "x-b3-spanid",
                "must be 16 lowercase",
            ),
            (
                &[tid, ("X-B3-SpanId", "0000000000000000")],
                "x-b3-spanid",
                "all zeros",
            ),
            (
                &[tid, sid, ("X-B3-ParentSpanId", "05e3")],
                "x-b3-parentspanid",
                "must be 16",
            ),
            (
                &[tid, sid, ("X-B3-Sampled", "yes")],
                "x-b3-sampled",
                "1 or 0",
            ),
            (&[tid, sid, ("X-B3-Sampled", "d")], "x-b3-sampled", "1 or 0"),
            (&[("X-B3-Sampled", "2")], "x-b3-sampled", "1 or 0"),
            (
                &[tid, sid, ("X-B3-Flags", "2")],
                "x-b3-flags",
                "1 (debug) or 0",
            ),
        ];
        for (headers, field, expected) in cases {
            let err = decode_b3_multi(headers.iter().copied()).unwrap_err();
            assert_eq!(err.field(), *field, "{headers:?}");
            let text = err.to_string();
            assert!(text.contains(expected), "{headers:?}: {text}");
        }
    }
    #[test]
    fn request_id_parse() {
        for (value, id) in [
            ("req-42", "req-42"),
            (" \tabc\t ", "abc"),
            (
                "0b9d7f2e-6c1a-4f3e-9a57-3c2e8d41b6a0",
                "0b9d7f2e-6c1a-4f3e-9a57-3c2e8d41b6a0",
            ),
            (
                "Root=1-5759e988-bd862e3fe1be46a994272793",
                "Root=1-5759e988-bd862e3fe1be46a994272793",
            ),
            (
                "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
                "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
            ),
        ] {
            let parsed = RequestId::parse(value).unwrap();
            assert_eq!(parsed.as_str(), id);
            assert_eq!(parsed.to_string(), id);
            assert_eq!(value.parse::<RequestId>().unwrap(), parsed);
        }
        let longest = "r".repeat(RequestId::MAX_LEN);
        assert_eq!(RequestId::parse(&longest).unwrap().as_str(), longest);

        let cases: &[(&str, &str)] = &[
            ("", "is empty"),
            (" \t ", "is empty"),
            ("two words", "visible ASCII"),
            ("tab\there", "visible ASCII"),
            ("new\nline", "visible ASCII"),
            ("nul\0", "visible ASCII"),
            ("del\u{7f}", "visible ASCII"),
            ("café", "visible ASCII"),
            ("ｒｅｑ", "visible ASCII"),
        ];
        for (value, expected) in cases {
            let err = RequestId::parse(value).unwrap_err();
            assert_eq!(err.field(), "x-request-id");
            let text = err.to_string();
            assert!(
                text.starts_with("invalid x-request-id value"),
                "{value:?}: {text}"
            );
            assert!(text.contains(expected), "{value:?}: {text}");
        }
        let err = RequestId::parse(&format!("{longest}r")).unwrap_err();
        assert!(err.to_string().contains("at most 128"), "{err}");
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn request_id_random_is_a_uuid_v4() {
        let a = RequestId::new_random();
        let b = RequestId::new_random();
        assert_ne!(a, b);
        for id in [a, b] {
            let text = id.as_str();
            assert_eq!(text.len(), 36, "{text}");
            let groups: Vec<&str> = text.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{text}"
            );
            assert!(
                groups.iter().all(|g| parse_hex(g.as_bytes()).is_some()),
                "{text}"
            );
            assert!(groups[2].starts_with('4'), "{text}");
            assert!(
                matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "{text}"
            );
            assert_eq!(RequestId::parse(text).unwrap(), id);
        }
    }

    #[test]
    fn request_id_in_the_context() {
        let id = RequestId::parse("req-7").unwrap();
        let ctx = Context::background().with_value(id.clone());
        assert_eq!(RequestId::from_context(&ctx), Some(&id));
        assert_eq!(RequestId::from_context(&Context::background()), None);
        assert_eq!(format!("{id:?}"), "RequestId(\"req-7\")");
        let shared: Arc<str> = id.into();
        assert_eq!(&*shared, "req-7");
    }
}
