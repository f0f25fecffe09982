//! Incremental request body accumulation for the filter.
//!
//! The proxy-wasm host hands the filter the body chunk by chunk; the filter reads only the new
//! bytes of each chunk and [`BodyAccumulator::push`]es them. The size limit is enforced the moment
//! it is exceeded: that push and every later one return [`Error::TooLarge`] and the buffer is
//! freed, so an oversized body is never held in memory. At end of stream (or in the trailers
//! callback, where HTTP/2 never signals end of stream in the body callback)
//! [`BodyAccumulator::parse`] parses the complete buffer once with [`crate::jsonrpc`].
//!
//! Bytes are appended to one growing buffer (amortised doubling, or one allocation when the
//! `Content-Length` is announced via [`BodyAccumulator::expect_length`]); nothing copies the
//! whole buffer per chunk.

use crate::error::Error;
use crate::jsonrpc::{self, Body, Limits};

/// Default body size limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = jsonrpc::DEFAULT_MAX_BYTES;

/// Accumulates a request body up to a size limit.
#[derive(Debug, Clone)]
pub struct BodyAccumulator {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl Default for BodyAccumulator {
    fn default() -> Self {
        BodyAccumulator::new(DEFAULT_MAX_BODY_BYTES)
    }
}

impl BodyAccumulator {
    /// An empty accumulator that accepts at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        BodyAccumulator {
            buf: Vec::new(),
            limit,
            overflowed: false,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes stored so far: the offset of the next new byte in the host's buffered body.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Whether the limit has been exceeded (the body is refused for good).
    pub fn is_overflowed(&self) -> bool {
        self.overflowed
    }

    /// The bytes stored so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Announces the body length (from `Content-Length`): more than the limit fails at once;
    /// otherwise the buffer is allocated once up front.
    pub fn expect_length(&mut self, length: usize) -> Result<(), Error> {
        if self.overflowed || length > self.limit {
            return Err(self.overflow());
        }
        self.buf
            .reserve_exact(length.saturating_sub(self.buf.len()));
        Ok(())
    }

    /// Appends the new bytes of a chunk. Fails (and frees the buffer) as soon as the total
    /// exceeds the limit; a body of exactly `limit` bytes is accepted.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if self.overflowed {
            return Err(self.overflow());
        }
        match self.buf.len().checked_add(chunk.len()) {
            Some(total) if total <= self.limit => {
                self.buf.extend_from_slice(chunk);
                Ok(())
            }
            _ => Err(self.overflow()),
        }
    }

    /// Parses the complete body (call at end of stream). The size limit is this accumulator's;
    /// `limits.max_depth` applies.
    pub fn parse(&self, limits: &Limits) -> Result<Body<'_>, Error> {
        self.parse_for(limits, jsonrpc::Revision::Legacy)
    }

    /// [`BodyAccumulator::parse`] with the shape checks of `revision`.
    pub fn parse_for(
        &self,
        limits: &Limits,
        revision: jsonrpc::Revision,
    ) -> Result<Body<'_>, Error> {
        if self.overflowed {
            return Err(Error::TooLarge { limit: self.limit });
        }
        let limits = Limits {
            max_bytes: self.limit,
            max_depth: limits.max_depth,
        };
        jsonrpc::parse_for(&self.buf, &limits, revision)
    }

    fn overflow(&mut self) -> Error {
        self.overflowed = true;
        self.buf = Vec::new();
        Error::TooLarge { limit: self.limit }
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
