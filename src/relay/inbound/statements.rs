//! Client → server rewriting of named prepared statements (see
//! [`crate::relay::prepared`]): Parse, Bind, Describe and Close get server names,
//! statements missing on this server are prepared just before they are used,
//! and what PostgreSQL would answer for the client's own bookkeeping (a Parse of
//! a statement the server has, a Close) is answered by the pooler in its turn.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::ClientHalf;
use crate::protocol::backend::{self, put_message};
use crate::protocol::{frontend, tag, Header, HEADER_LEN};
use crate::relay::prepared::{close_message, deallocated_name, Prepared, StmtDef};
use crate::relay::refuse::DUPLICATE_STATEMENT;
use crate::relay::track::{Answer, ParseFailure, Synth, Tracker};
use crate::tenant::TenantPolicy;

/// The name a Bind/Describe of the unnamed statement is sent under when this
/// transaction did not Parse it: PostgreSQL then reports it missing, rather than
/// running whatever unnamed statement a previous client left on the server.
const UNNAMED_ELSEWHERE: &[u8] = b"tenantpool_unnamed_statement_of_an_earlier_transaction";

impl ClientHalf {
    /// A whole simple Query at `ready`: DEALLOCATE of one of the client's statements
    /// is answered here (returns true). DEALLOCATE ALL and DISCARD ALL go to the
    /// server; the outbound side forgets every statement when they complete.
    pub(super) fn query_statements(
        &mut self,
        total: usize,
        p: &mut Prepared<'_>,
        tracker: &mut Tracker,
    ) -> bool {
        let body = &self.buf[self.ready + HEADER_LEN..self.ready + total];
        match deallocated_name(frontend::query_text(body)) {
            Some(name) if p.client.remove(&name) => {
                // The server copy is shared and stays; answer as PostgreSQL would.
                let mut answer = BytesMut::with_capacity(32);
                put_message(&mut answer, tag::COMMAND_COMPLETE, |b| {
                    backend::put_cstr(b, "DEALLOCATE")
                });
                backend::ready_for_query(&mut answer, tracker.status());
                self.emit_at_ready(total, &[]);
                tracker.synthetic(Synth::Raw(answer.freeze()));
                true
            }
            _ => false,
        }
    }

    /// A whole Parse at `ready`. Named statements are recorded for the client
    /// and sent under their server name, unless this server has it already.
    /// Returns true when handled (false: relay it as it is).
    pub(super) fn parse_statement(
        &mut self,
        total: usize,
        p: &mut Prepared<'_>,
        policy: Option<&TenantPolicy>,
        tracker: &mut Tracker,
    ) -> bool {
        let body = &self.buf[self.ready + HEADER_LEN..self.ready + total];
        if body.first() == Some(&0) {
            return false; // the unnamed statement lives within one transaction
        }
        let Some((name, mut def)) = StmtDef::from_parse_body(body) else {
            return false; // malformed: let PostgreSQL say so
        };
        let header = Header {
            tag: tag::PARSE,
            body_len: total - HEADER_LEN,
        };
        if p.client.contains(&name) {
            self.refuse(header, header.body_len, DUPLICATE_STATEMENT, tracker);
            return true;
        }
        if let Some(policy) = policy {
            let text = frontend::parse_query_text(body).unwrap_or(body);
            def.touches_tenant = policy.may_change_setting(text);
        }
        let def = Arc::new(def);
        p.client.insert(name.clone(), Arc::clone(&def));
        if p.server.touch(&def.server_name) {
            self.emit_at_ready(total, &[]);
            tracker.synthetic(Synth::ParseComplete);
        } else {
            self.evict_for(&def, p, tracker);
            self.emit_at_ready(total, &def.parse);
            tracker.sent_parse(ParseFailure {
                server_name: def.server_name.clone(),
                client_name: Some(name),
            });
        }
        true
    }

    /// A Bind, Describe or Close at `ready` (its names are in the buffer, or it
    /// is longer than the limit). Returns true when handled.
    pub(super) fn statement_message(
        &mut self,
        header: Header,
        p: &mut Prepared<'_>,
        tracker: &mut Tracker,
    ) -> bool {
        let start = self.ready + HEADER_LEN;
        let end = (start + header.body_len).min(self.buf.len());
        let body = &self.buf[start..end];
        match header.tag {
            tag::BIND => {
                let Some(portal_end) = memchr::memchr(0, body) else {
                    return false;
                };
                let Some(name_len) = memchr::memchr(0, &body[portal_end + 1..]) else {
                    return false;
                };
                let name = body[portal_end + 1..portal_end + 1 + name_len].to_vec();
                let portal = body[..portal_end].to_vec();
                let Some(server_name) = self.statement_for(&name, p, tracker) else {
                    return false;
                };
                // Rewrite the header, portal and statement name; the rest streams on.
                let old_prefix = HEADER_LEN + portal.len() + 1 + name.len() + 1;
                let body_len = header.body_len - name.len() + server_name.len();
                let mut prefix = BytesMut::with_capacity(old_prefix + server_name.len());
                prefix.put_u8(tag::BIND);
                prefix.put_i32(4 + body_len as i32);
                prefix.put_slice(&portal);
                prefix.put_u8(0);
                prefix.put_slice(&server_name);
                prefix.put_u8(0);
                self.emit_at_ready(old_prefix, &prefix);
                self.body_left = header.body_len + HEADER_LEN - old_prefix;
                tracker.sent(Answer::Bind);
                true
            }
            tag::DESCRIBE if body.first() == Some(&b'S') => {
                let Some(name) = frontend::query_text(&body[1..]).get(..).map(<[u8]>::to_vec)
                else {
                    return false;
                };
                if body.len() != header.body_len {
                    return false;
                }
                let Some(server_name) = self.statement_for(&name, p, tracker) else {
                    return false;
                };
                let mut m = BytesMut::with_capacity(server_name.len() + 8);
                put_message(&mut m, tag::DESCRIBE, |b| {
                    b.put_u8(b'S');
                    b.put_slice(&server_name);
                    b.put_u8(0);
                });
                self.emit_at_ready(header.total_len(), &m);
                tracker.sent(Answer::DescribeStatement);
                true
            }
            tag::CLOSE if body.first() == Some(&b'S') && body.len() == header.body_len => {
                let name = frontend::query_text(&body[1..]);
                if name.is_empty() {
                    return false;
                }
                // The server copy is shared and may stay; the client's name goes.
                p.client.remove(name);
                self.emit_at_ready(header.total_len(), &[]);
                tracker.synthetic(Synth::CloseComplete);
                true
            }
            _ => false,
        }
    }

    /// The server name to use for the client's statement `name`, preparing it on
    /// this server first if needed. `None`: send the message unchanged (a name the
    /// client never prepared, which PostgreSQL will report).
    fn statement_for(
        &mut self,
        name: &[u8],
        p: &mut Prepared<'_>,
        tracker: &mut Tracker,
    ) -> Option<Bytes> {
        if name.is_empty() {
            return (!tracker.unnamed_parsed).then(|| Bytes::from_static(UNNAMED_ELSEWHERE));
        }
        let def = Arc::clone(p.client.get(name)?);
        if def.touches_tenant {
            tracker.tenant_touched = true;
        }
        if !p.server.touch(&def.server_name) {
            self.evict_for(&def, p, tracker);
            self.emit_at_ready(0, &def.parse);
            tracker.injected(
                Answer::Parse,
                Some(ParseFailure {
                    server_name: def.server_name.clone(),
                    client_name: None,
                }),
            );
        }
        Some(Bytes::copy_from_slice(def.server_name.as_bytes()))
    }

    /// Records `def` as prepared on this server, closing the least recently used
    /// statement first if the server would hold too many.
    fn evict_for(&mut self, def: &StmtDef, p: &mut Prepared<'_>, tracker: &mut Tracker) {
        if let Some(evicted) = p.server.insert(def.server_name.clone(), p.max) {
            self.emit_at_ready(0, &close_message(&evicted));
            tracker.injected(Answer::Close, None);
        }
    }
}
