//! `Db::write_shared`: on SQLite, concurrent work shares one transaction and one commit, and a
//! piece that fails, rolls itself back or panics takes nothing of the others with it. On
//! PostgreSQL each piece has its transaction alone, with the same outcomes.

use sqlx::Row as _;
use tally_db::group::{roll_back_piece, shared};
use tally_db::testing::{TestBackend, TestLocation};
use tally_db::{both_backends, classify, Backend, Db, DbErrorKind};

async fn open(backend: TestBackend) -> Option<(TestLocation, Db)> {
    let location = TestLocation::new(backend).await?;
    let db = Db::open(&location.settings(), "grouped").await.unwrap();
    let mut tx = db.begin_write().await.unwrap();
    sqlx::query("CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut *tx)
        .await
        .unwrap();
    db.commit(tx).await.unwrap();
    Some((location, db))
}

async fn ids(db: &Db) -> Vec<i64> {
    sqlx::query("SELECT id FROM notes ORDER BY id")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect()
}

/// Inserts note `id`, then note `then` if any (a second write, which the piece's failure must
/// take back with the first).
fn insert(
    db: &Db,
    id: i64,
    then: Option<i64>,
) -> tokio::task::JoinHandle<Result<i64, sqlx::Error>> {
    let db = db.clone();
    tokio::spawn(async move {
        db.write_shared(shared(move |tx| {
            Box::pin(async move {
                for id in std::iter::once(id).chain(then) {
                    sqlx::query("INSERT INTO notes (id, body) VALUES ($1, 'n')")
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(id)
            })
        }))
        .await
    })
}

both_backends!(concurrent_pieces_commit_together);
async fn concurrent_pieces_commit_together(backend: TestBackend) {
    let Some((_location, db)) = open(backend).await else {
        return;
    };
    let commits = db.subscribe_commits();
    let before = *commits.borrow();
    let tasks: Vec<_> = (1..=200).map(|id| insert(&db, id, None)).collect();
    for (id, task) in (1..=200).zip(tasks) {
        assert_eq!(task.await.unwrap().unwrap(), id);
    }
    assert_eq!(ids(&db).await, (1..=200).collect::<Vec<_>>());
    let commits = commits.borrow().wrapping_sub(before);
    match db.backend() {
        // 200 pieces sent at once queue while the first batch runs: far fewer commits.
        Backend::Sqlite => assert!(commits < 100, "{commits} commits for 200 pieces"),
        Backend::Postgres => assert_eq!(commits, 200),
    }
}

both_backends!(a_failing_piece_takes_only_itself_back);
async fn a_failing_piece_takes_only_itself_back(backend: TestBackend) {
    let Some((_location, db)) = open(backend).await else {
        return;
    };
    insert(&db, 7, None).await.unwrap().unwrap();
    // Piece 3 writes note 1003 and then fails on note 7, already there: neither note stays.
    let tasks: Vec<_> = (1..=6)
        .map(|id| match id {
            3 => insert(&db, 1003, Some(7)),
            id => insert(&db, id, Some(id + 100)),
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    for (i, outcome) in outcomes.iter().enumerate() {
        match i {
            2 => {
                let e = outcome.as_ref().expect_err("the duplicate must fail");
                assert_eq!(classify(e), DbErrorKind::UniqueViolation);
            }
            _ => assert!(outcome.is_ok(), "piece {i}: {outcome:?}"),
        }
    }
    assert_eq!(
        ids(&db).await,
        vec![1, 2, 4, 5, 6, 7, 101, 102, 104, 105, 106]
    );
}

both_backends!(a_piece_rolls_back_its_own_writes_and_goes_on);
async fn a_piece_rolls_back_its_own_writes_and_goes_on(backend: TestBackend) {
    let Some((_location, db)) = open(backend).await else {
        return;
    };
    let others: Vec<_> = (1..=4).map(|id| insert(&db, id, None)).collect();
    let rolled = db.write_shared(shared(|tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO notes (id, body) VALUES (50, 'refused')")
                .execute(&mut **tx)
                .await?;
            roll_back_piece(tx).await?;
            sqlx::query("INSERT INTO notes (id, body) VALUES (51, 'the refusal')")
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
    }));
    rolled.await.unwrap();
    for task in others {
        task.await.unwrap().unwrap();
    }
    assert_eq!(ids(&db).await, vec![1, 2, 3, 4, 51]);
}

both_backends!(a_panicking_piece_fails_alone);
async fn a_panicking_piece_fails_alone(backend: TestBackend) {
    let Some((_location, db)) = open(backend).await else {
        return;
    };
    let before: Vec<_> = (1..=3).map(|id| insert(&db, id, None)).collect();
    let panicking = {
        let db = db.clone();
        tokio::spawn(async move {
            db.write_shared(shared(|tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO notes (id, body) VALUES (99, 'lost')")
                        .execute(&mut **tx)
                        .await?;
                    if std::hint::black_box(true) {
                        panic!("a bug in the work");
                    }
                    Ok(())
                })
            }))
            .await
        })
    };
    let after: Vec<_> = (4..=6).map(|id| insert(&db, id, None)).collect();
    for task in before.into_iter().chain(after) {
        task.await.unwrap().unwrap();
    }
    // On SQLite the piece's panic is caught in the batch and answered as an error; on
    // PostgreSQL it unwinds the submitting task, whose transaction is dropped.
    match panicking.await {
        Ok(outcome) => assert!(outcome.is_err()),
        Err(e) => assert!(e.is_panic()),
    }
    assert_eq!(ids(&db).await, vec![1, 2, 3, 4, 5, 6]);
    // The queue still works after the panic.
    insert(&db, 10, None).await.unwrap().unwrap();
    assert_eq!(ids(&db).await.last(), Some(&10));
}
