//! Contract of [`DlqRevisionStore`](crate::ports::DlqRevisionStore):
//! revisions round-trip in number order, a number is taken once (two
//! editors racing for it: one wins, the other changes nothing), and a
//! review moves only a revision in one of the states it names.

use std::sync::Arc;

use serde_json::json;

use super::fixtures::at;
use crate::ports::{DlqRevisionStore, NewRevision, Review, RevisionState};

fn rev(event_id: &str, revision: u32, author: &str, state: RevisionState) -> NewRevision {
    NewRevision {
        event_id: event_id.to_owned(),
        revision,
        based_on: revision - 1,
        author: author.to_owned(),
        reason: format!("fix {revision}: the producer sent a wrong status"),
        patch: json!([{ "op": "replace", "path": "/data/status", "value": revision }]),
        payload: json!({ "eventId": event_id, "data": { "status": revision, "note": "é ✓" } })
            .to_string(),
        state,
        at: at(i64::from(revision)),
    }
}

fn approve<'a>(event_id: &'a str, revision: u32, reviewer: &'a str) -> Review<'a> {
    Review {
        event_id,
        revision,
        from: &[RevisionState::AwaitingApproval],
        to: RevisionState::Approved,
        reviewer,
        note: Some("looks right"),
        at: at(100),
    }
}

pub async fn add_then_list_round_trips_in_number_order(store: Arc<dyn DlqRevisionStore>) {
    assert!(store.revisions("e1").await.expect("list").is_empty());
    let second = rev("e1", 2, "bob", RevisionState::AwaitingApproval);
    let first = rev("e1", 1, "alice", RevisionState::Ready);
    // Stored out of order, listed by number.
    let stored2 = store
        .add_revision(&second)
        .await
        .expect("add")
        .expect("new");
    let stored1 = store.add_revision(&first).await.expect("add").expect("new");
    let listed = store.revisions("e1").await.expect("list");
    assert_eq!(listed, vec![stored1.clone(), stored2]);
    let r = &listed[0];
    assert_eq!(
        (r.revision, r.based_on, r.author.as_str(), r.state),
        (1, 0, "alice", RevisionState::Ready)
    );
    assert_eq!(r.reason, first.reason);
    assert_eq!(r.patch, first.patch);
    assert_eq!(r.payload, first.payload);
    assert_eq!(r.created_at, first.at);
    assert_eq!((r.reviewer.as_deref(), r.reviewed_at), (None, None));
}

pub async fn a_taken_number_is_refused_and_changes_nothing(store: Arc<dyn DlqRevisionStore>) {
    let first = rev("e1", 1, "alice", RevisionState::Ready);
    store.add_revision(&first).await.expect("add").expect("new");
    let mut again = rev("e1", 1, "bob", RevisionState::AwaitingApproval);
    again.payload = "{}".to_owned();
    assert_eq!(store.add_revision(&again).await.expect("add"), None);
    let listed = store.revisions("e1").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].author, "alice");
    // The same number of another record is its own.
    assert!(store
        .add_revision(&rev("e2", 1, "bob", RevisionState::Ready))
        .await
        .expect("add")
        .is_some());
    assert_eq!(store.revisions("e2").await.expect("list").len(), 1);
}

pub async fn racing_editors_get_one_revision_each_number(store: Arc<dyn DlqRevisionStore>) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let r = rev("e1", 1, &format!("editor-{i}"), RevisionState::Ready);
                store.add_revision(&r).await.expect("add").is_some()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.expect("task"));
    }
    assert_eq!(won, 1, "exactly one editor stores revision 1");
    assert_eq!(store.revisions("e1").await.expect("list").len(), 1);
}

pub async fn a_review_moves_only_a_revision_in_a_named_state(store: Arc<dyn DlqRevisionStore>) {
    store
        .add_revision(&rev("e1", 1, "alice", RevisionState::AwaitingApproval))
        .await
        .expect("add")
        .expect("new");
    // Unknown revision or record: nothing.
    assert_eq!(
        store
            .review(&approve("e1", 2, "bob"))
            .await
            .expect("review"),
        None
    );
    assert_eq!(
        store
            .review(&approve("e9", 1, "bob"))
            .await
            .expect("review"),
        None
    );
    let approved = store
        .review(&approve("e1", 1, "bob"))
        .await
        .expect("review")
        .expect("approved");
    assert_eq!(approved.state, RevisionState::Approved);
    assert_eq!(approved.reviewer.as_deref(), Some("bob"));
    assert_eq!(approved.reviewed_at, Some(at(100)));
    assert_eq!(approved.review_note.as_deref(), Some("looks right"));
    // Approved once: a second review from AWAITING_APPROVAL changes nothing.
    let reject = Review {
        to: RevisionState::Rejected,
        reviewer: "carol",
        ..approve("e1", 1, "carol")
    };
    assert_eq!(store.review(&reject).await.expect("review"), None);
    assert_eq!(store.revisions("e1").await.expect("list"), vec![approved]);
    // Several states may be named.
    store
        .add_revision(&rev("e1", 2, "alice", RevisionState::Ready))
        .await
        .expect("add")
        .expect("new");
    let from = [RevisionState::Ready, RevisionState::AwaitingApproval];
    let rejected = store
        .review(&Review {
            revision: 2,
            from: &from,
            note: None,
            ..reject
        })
        .await
        .expect("review")
        .expect("rejected");
    assert_eq!(
        (
            rejected.state,
            rejected.reviewer.as_deref(),
            rejected.review_note
        ),
        (RevisionState::Rejected, Some("carol"), None)
    );
}
