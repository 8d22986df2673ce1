//! Broker message bodies: one [`v1::Job`], or several in a
//! [`v1::JobBatch`] so that the broker carries many sends per message.
//!
//! The two are told apart by the first byte: a batch begins with the tag of
//! its field 2047 (`0xFA 0x7F`), a job with the tag of one of its fields
//! 1..15 (below `0x80`). Packing concatenates already-encoded jobs, so a
//! job is encoded once however it travels.

use prost::encoding::{decode_varint, encode_key, encode_varint, WireType};
use prost::Message as _;

use crate::v1;

/// The field number of `JobBatch.jobs`.
const BATCH_FIELD: u32 = 2047;
/// Jobs per batch at most: a batch is acked, redelivered and charged to a
/// lane as one, so it stays small next to the queues' prefetch.
pub const MAX_JOBS: usize = 64;
/// Jobs per batch on the central queues: what workers prefetch is out of
/// the gate's sight and ahead of every tenant's next job, so it is kept
/// near what they send at once (prefetch 32 × 16 = 512 jobs per worker).
pub const MAX_CENTRAL_JOBS: usize = 16;
/// Bytes of encoded jobs per batch at most (a larger job travels alone).
pub const MAX_BYTES: usize = 1024 * 1024;

/// One encoded job marked as a second copy (`Job.republished`: published
/// again because its first confirm was never recorded); unchanged if it
/// does not decode (the worker dead-letters it).
pub fn as_copy(envelope: &[u8]) -> Vec<u8> {
    match v1::Job::decode(envelope) {
        Ok(mut job) => {
            job.republished = true;
            job.encode_to_vec()
        }
        Err(_) => envelope.to_vec(),
    }
}

/// Whether `body` is a batch rather than a single job.
pub fn is_batch(body: &[u8]) -> bool {
    body.first() == Some(&0xFA)
}

/// The jobs of a message body, in order.
pub fn decode(body: &[u8]) -> Result<Vec<v1::Job>, prost::DecodeError> {
    if is_batch(body) {
        Ok(v1::JobBatch::decode(body)?.jobs)
    } else {
        Ok(vec![v1::Job::decode(body)?])
    }
}

/// How many jobs `body` holds, read from the batch's field headers
/// without decoding the jobs (1 for a single job or an unreadable body).
pub fn count(body: &[u8]) -> usize {
    if !is_batch(body) {
        return 1;
    }
    let mut rest = body;
    let mut n = 0;
    while !rest.is_empty() {
        let (Ok(_key), Ok(len)) = (decode_varint(&mut rest), decode_varint(&mut rest)) else {
            return n.max(1);
        };
        let Some(after) = usize::try_from(len).ok().and_then(|l| rest.get(l..)) else {
            return n.max(1);
        };
        rest = after;
        n += 1;
    }
    n.max(1)
}

/// One message body for `jobs` (each already encoded): the job itself when
/// there is one, a batch otherwise.
pub fn pack<B: AsRef<[u8]>>(jobs: &[B]) -> Vec<u8> {
    if let [one] = jobs {
        return one.as_ref().to_vec();
    }
    let len: usize = jobs.iter().map(|j| j.as_ref().len() + 8).sum();
    let mut out = Vec::with_capacity(len);
    for job in jobs {
        let job = job.as_ref();
        encode_key(BATCH_FIELD, WireType::LengthDelimited, &mut out);
        encode_varint(job.len() as u64, &mut out);
        out.extend_from_slice(job);
    }
    out
}

/// Splits `items` into runs of at most `max_jobs` whose `size`s add up to
/// at most [`MAX_BYTES`] (an item larger than that forms a run alone),
/// keeping their order.
pub fn split<T>(items: Vec<T>, max_jobs: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut runs: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let n = size(&item);
        match runs.last_mut() {
            Some(run) if run.len() < max_jobs && bytes + n <= MAX_BYTES => {
                bytes += n;
                run.push(item);
            }
            _ => {
                bytes = n;
                runs.push(vec![item]);
            }
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_the_job_marked_republished_and_garbage_stays_as_it_is() {
        let original = job(1);
        let copy = v1::Job::decode(as_copy(&original.encode_to_vec()).as_slice()).expect("decodes");
        assert!(copy.republished);
        assert_eq!(
            v1::Job {
                republished: false,
                ..copy
            },
            original
        );
        assert_eq!(as_copy(&[0xFF, 0xFF]), vec![0xFF, 0xFF]);
    }

    fn job(i: usize) -> v1::Job {
        v1::Job {
            message_id: format!("m{i}"),
            tenant_id: "t".into(),
            channel: v1::Channel::Email as i32,
            recipients: vec![format!("r{i}@example.com")],
            priority: 5,
            ..Default::default()
        }
    }

    #[test]
    fn a_packed_batch_is_the_generated_encoding_and_reads_back_in_order() {
        let jobs: Vec<v1::Job> = (0..5).map(job).collect();
        let bodies: Vec<Vec<u8>> = jobs.iter().map(|j| j.encode_to_vec()).collect();
        let packed = pack(&bodies);
        let generated = v1::JobBatch { jobs: jobs.clone() }.encode_to_vec();
        assert_eq!(packed, generated);
        assert_eq!(&packed[..2], &[0xFA, 0x7F]);
        assert!(is_batch(&packed));
        assert_eq!(decode(&packed).expect("a batch"), jobs);
        assert_eq!(count(&packed), 5);
        let big: Vec<Vec<u8>> = (0..64)
            .map(|i| {
                let mut j = job(i);
                j.content = Some(v1::Content {
                    text: "x".repeat(300 * i),
                    ..Default::default()
                });
                j.encode_to_vec()
            })
            .collect();
        assert_eq!(count(&pack(&big)), 64);
        assert_eq!(decode(&pack(&big)).expect("a batch").len(), 64);
    }

    #[test]
    fn one_job_travels_as_itself() {
        let body = job(1).encode_to_vec();
        assert_eq!(pack(std::slice::from_ref(&body)), body);
        assert_eq!(count(&body), 1);
        assert!(!is_batch(&body));
        assert_eq!(decode(&body).expect("a job"), vec![job(1)]);
    }

    #[test]
    fn no_job_encoding_begins_like_a_batch() {
        // Every field of Job alone, and an empty job: none starts with 0xFA.
        let mut each = vec![v1::Job::default()];
        each.push(v1::Job {
            tenant_id: "t".into(),
            ..Default::default()
        });
        each.push(v1::Job {
            last_error: "e".into(),
            ..Default::default()
        });
        each.push(v1::Job {
            batch_id: "b".into(),
            ..Default::default()
        });
        for j in each {
            assert!(!is_batch(&j.encode_to_vec()), "{j:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(&[0xFA, 0x7F, 0x05, 0x01]).is_err());
        assert!(decode(&[0xFF, 0xFF, 0xFF]).is_err());
    }

    #[test]
    fn split_caps_count_and_bytes_and_keeps_order() {
        let runs = split((0..150).collect::<Vec<usize>>(), MAX_JOBS, |_| 10);
        assert_eq!(
            runs.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![64, 64, 22]
        );
        assert_eq!(runs.concat(), (0..150).collect::<Vec<_>>());
        let big = split(
            vec![MAX_BYTES / 2, MAX_BYTES / 2, 1, MAX_BYTES * 2, 1],
            MAX_JOBS,
            |n| *n,
        );
        assert_eq!(
            big.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 1, 1, 1]
        );
        assert!(split(Vec::<usize>::new(), MAX_JOBS, |n| *n).is_empty());
        let central = split((0..40).collect::<Vec<usize>>(), MAX_CENTRAL_JOBS, |_| 1);
        assert_eq!(
            central.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![16, 16, 8]
        );
    }
}
