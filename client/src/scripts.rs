//! The Scripts calls of [`Client`]: load a script, run it by text or by hash.
//!
//! A script runs as one transaction on the node that receives it, and may write, so the
//! client never repeats a run that may have committed. It repeats one only when the
//! request surely never left (the endpoint refused the connection: then it moves on to
//! the next endpoint), or when the node says a transient error (`Unavailable`,
//! `Timeout`, `Locked` from a call inside the script) stopped it before its commit. Scripts are cached per node by the SHA-256 of their text; [`Client::eval`]
//! sends the hash first and the text only when that node does not have it.

use std::fmt::Write as _;

use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::v1;
use kahuna_proto::v1::run_script_request::Script;
use kahuna_proto::v1::scripts_client::ScriptsClient;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::client::Client;
use crate::connection::{Link, Retry, request};
use crate::error::{Error, ScriptErrorKind};
use crate::routes::Route;
use crate::script_value::{ScriptArgs, ScriptValue};
use crate::types::ScriptResult;

fn scripts_client(channel: Channel) -> ScriptsClient<Channel> {
    ScriptsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Returns the hash the server gives `source`: its SHA-256 as 64 lowercase hex digits.
pub fn script_hash(source: &str) -> String {
    Sha256::digest(source.as_bytes()).iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

impl Client {
    /// Checks that `source` compiles and caches it on the current endpoint's node;
    /// returns its hash for [`Client::eval_sha`]. A syntax error is
    /// [`Error::Script`] with [`ScriptErrorKind::Syntax`], naming the line.
    ///
    /// The cache is per node and bounded: another node, or the same one later, may not
    /// have the script; [`Client::eval`] copes with both.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: loading only fills a cache.
    pub async fn script_load(&self, source: impl Into<String>) -> Result<String, Error> {
        let message = v1::LoadScriptRequest { source: source.into() };
        let response = self
            .pool
            .call("LoadScript", true, move |link, timeout| {
                let message = message.clone();
                async move { scripts_client(link.channel).load(request(message, timeout)).await }
            })
            .await?;
        Ok(response.hash)
    }

    /// Runs the Lua script `source` with `args` as one transaction: by its hash when the
    /// node has it cached, else by sending the text (which caches it).
    ///
    /// The node re-runs a script whose commit conflicts a few times before answering
    /// [`Error::Conflict`]. A failed script committed nothing, except that after
    /// [`Error::Timeout`] or [`Error::Unavailable`] its commit may have landed: the client
    /// repeats a run only when it surely had no effect (see the module notes).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the run to the node: it may commit or not.
    pub async fn eval(&self, source: &str, args: &ScriptArgs) -> Result<ScriptResult, Error> {
        match self.run(Script::Hash(script_hash(source)), args).await {
            Err(Error::Script { kind: ScriptErrorKind::NotLoaded, .. }) => {
                // Not run: the node only looked the hash up. The text both caches and runs
                // it in one call, whichever node takes it.
                self.run(Script::Source(source.to_owned()), args).await
            }
            other => other,
        }
    }

    /// Runs the script with `hash` (from [`Client::script_load`] or [`script_hash`]) with
    /// `args`, as [`Client::eval`] does. A node that does not have it cached answers
    /// [`Error::Script`] with [`ScriptErrorKind::NotLoaded`].
    ///
    /// # Cancel safety
    ///
    /// As for [`Client::eval`].
    pub async fn eval_sha(&self, hash: &str, args: &ScriptArgs) -> Result<ScriptResult, Error> {
        self.run(Script::Hash(hash.to_owned()), args).await
    }

    async fn run(&self, script: Script, args: &ScriptArgs) -> Result<ScriptResult, Error> {
        let message = v1::RunScriptRequest {
            script: Some(script),
            args: args.positional.iter().map(ScriptValue::to_proto).collect(),
            named_args: args.named.iter().map(|(k, v)| (k.clone(), v.to_proto())).collect(),
        };
        let attempt = move |link: Link, timeout| {
            let message = message.clone();
            async move { scripts_client(link.channel).run(request(message, timeout)).await }
        };
        let (response, _) = match &args.route {
            Some(key) => {
                self.pool.call_near(Route::Key(key), "RunScript", Retry::NotSent, self.timeout(), attempt).await
            }
            None => self.pool.call_on(None, "RunScript", Retry::NotSent, self.timeout(), attempt).await,
        }?;
        Ok(ScriptResult {
            value: response.value.map(ScriptValue::from_proto).unwrap_or_default(),
            hash: response.hash,
            commit_ts: response.commit_ts,
            attempts: response.attempts,
            served_by: response.served_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(script_hash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(script_hash("return 1").len(), 64);
    }
}
