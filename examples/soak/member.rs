//! One soak member: a connection to kelp that cycles through its groups. Raw frames, one request at
//! a time, every read bounded; a closed or failed connection is reopened (counted).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const READ_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Default)]
pub struct Tally {
    pub joins: u64,
    pub syncs: u64,
    pub heartbeats: u64,
    pub commits: u64,
    pub leaves: u64,
    pub kills: u64,
    pub reconnects: u64,
    pub errors: HashMap<String, u64>,
}

pub struct Member {
    addr: String,
    id: usize,
    groups: [String; 2],
    deadline: Instant,
    tally: Arc<Mutex<Tally>>,
    conn: Option<TcpStream>,
    correlation: i32,
    rng: u64,
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

impl Member {
    pub fn new(
        addr: String,
        id: usize,
        groups: [String; 2],
        deadline: Instant,
        tally: Arc<Mutex<Tally>>,
    ) -> Member {
        Member {
            addr,
            id,
            groups,
            deadline,
            tally,
            conn: None,
            correlation: 0,
            rng: id as u64 * 0x9E37_79B9 + 1,
        }
    }

    fn next(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    fn count(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut self.tally.lock().unwrap());
    }

    fn error(&self, what: String) {
        *self.tally.lock().unwrap().errors.entry(what).or_default() += 1;
    }

    pub async fn run(mut self) {
        while Instant::now() < self.deadline {
            let group = self.groups[self.next(2) as usize].clone();
            if self.cycle(&group).await.is_err() {
                self.conn = None; // reconnect on the next request
                self.count(|t| t.reconnects += 1);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// One membership: join, sync, heartbeats and a commit, then leave, die or just stop.
    async fn cycle(&mut self, group: &str) -> Result<(), String> {
        let (member, generation, leader, members) = self.join(group).await?;
        self.count(|t| t.joins += 1);
        if generation < 0 {
            return Ok(()); // an error was counted; try again
        }
        let assignments = if leader {
            members
                .iter()
                .map(|m| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from(format!("{m}@{generation}")))
                })
                .collect()
        } else {
            Vec::new()
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(s(group).into())
            .with_generation_id(generation)
            .with_member_id(s(&member))
            .with_assignments(assignments);
        let r: SyncGroupResponse = self.call(ApiKey::SyncGroup, 3, &sync).await?;
        self.count(|t| t.syncs += 1);
        if r.error_code != 0 {
            self.error(format!("SyncGroup:{}", r.error_code));
            return Ok(());
        }
        for _ in 0..1 + self.next(4) {
            tokio::time::sleep(Duration::from_millis(500 + self.next(1000))).await;
            let hb = HeartbeatRequest::default()
                .with_group_id(s(group).into())
                .with_generation_id(generation)
                .with_member_id(s(&member));
            let r: HeartbeatResponse = self.call(ApiKey::Heartbeat, 3, &hb).await?;
            self.count(|t| t.heartbeats += 1);
            if r.error_code != 0 {
                self.error(format!("Heartbeat:{}", r.error_code));
                break;
            }
        }
        let partition = OffsetCommitRequestPartition::default()
            .with_partition_index((self.id % 4) as i32)
            .with_committed_offset(self.next(1_000_000) as i64);
        let commit = OffsetCommitRequest::default()
            .with_group_id(s(group).into())
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(&member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("soak")))
                .with_partitions(vec![partition])]);
        let _: OffsetCommitResponse = self.call(ApiKey::OffsetCommit, 7, &commit).await?;
        self.count(|t| t.commits += 1);
        match self.next(3) {
            0 => {
                let leave = LeaveGroupRequest::default()
                    .with_group_id(s(group).into())
                    .with_member_id(s(&member));
                let _: LeaveGroupResponse = self.call(ApiKey::LeaveGroup, 1, &leave).await?;
                self.count(|t| t.leaves += 1);
            }
            1 => {
                self.conn = None; // killed: no LeaveGroup; the session expires
                self.count(|t| t.kills += 1);
            }
            _ => {} // rejoins later with a new member id; the old one expires
        }
        Ok(())
    }

    /// JoinGroup v5 (a new member first gets MEMBER_ID_REQUIRED, then joins with that id).
    async fn join(&mut self, group: &str) -> Result<(String, i32, bool, Vec<String>), String> {
        let mut member = String::new();
        for _ in 0..2 {
            let metadata = Bytes::from_static(&[
                0, 0, 0, 0, 0, 1, 0, 4, b's', b'o', b'a', b'k', 255, 255, 255, 255,
            ]);
            let join = JoinGroupRequest::default()
                .with_group_id(s(group).into())
                .with_session_timeout_ms(6000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(s(&member))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(metadata)]);
            let r: JoinGroupResponse = self.call(ApiKey::JoinGroup, 5, &join).await?;
            match r.error_code {
                0 => {
                    let members = r.members.iter().map(|m| m.member_id.to_string()).collect();
                    return Ok((
                        r.member_id.to_string(),
                        r.generation_id,
                        r.leader == r.member_id,
                        members,
                    ));
                }
                79 => member = r.member_id.to_string(),
                code => {
                    self.error(format!("JoinGroup:{code}"));
                    return Ok((String::new(), -1, false, Vec::new()));
                }
            }
        }
        Ok((String::new(), -1, false, Vec::new()))
    }

    async fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &Q,
    ) -> Result<R, String> {
        if self.conn.is_none() {
            let c = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| e.to_string())?;
            let _ = c.set_nodelay(true);
            self.conn = Some(c);
        }
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(s(&format!("soak-{}", self.id))));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .map_err(|e| e.to_string())?;
        body.encode(&mut buf, version).map_err(|e| e.to_string())?;
        let mut frame = BytesMut::with_capacity(buf.len() + 4);
        frame.put_i32(buf.len() as i32);
        frame.extend_from_slice(&buf);
        let conn = self.conn.as_mut().ok_or("no connection")?;
        conn.write_all(&frame).await.map_err(|e| e.to_string())?;
        let read = async {
            let len = conn.read_i32().await? as usize;
            let mut body = vec![0u8; len];
            conn.read_exact(&mut body).await?;
            Ok::<_, std::io::Error>(body)
        };
        let body = tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| "read timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|e| e.to_string())?;
        if header.correlation_id != self.correlation {
            return Err("correlation id mismatch".into());
        }
        let response = R::decode(&mut body, version).map_err(|e| e.to_string())?;
        let _ = body.remaining();
        Ok(response)
    }
}
