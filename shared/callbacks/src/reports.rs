//! Reports mail systems send back to the return path: delivery status
//! notifications (RFC 3464, `multipart/report; report-type=delivery-status`)
//! and complaint feedback reports (ARF, RFC 5965, `report-type=
//! feedback-report`), read with `mail-parser`. Only the machine-readable
//! part is believed; a report without one is refused, not guessed at.

use mail_parser::{MessageParser, MimeHeaders};

/// What one report says about the message it came back for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// `Action: failed` for a recipient: the message was not delivered.
    Bounce {
        recipient: Option<String>,
        /// The enhanced status code (`5.1.1`); 5.x.x is permanent (hard),
        /// 4.x.x transient (soft).
        status: String,
        /// `Diagnostic-Code`, as the remote server said it.
        diagnostic: Option<String>,
        reporting_mta: Option<String>,
    },
    /// `Action: delayed` (still being tried), `delivered`, `relayed` or
    /// `expanded`: no bounce.
    NotABounce { action: String },
    /// An ARF report: the recipient marked the message as spam.
    Complaint {
        feedback_type: String,
        user_agent: Option<String>,
    },
}

impl Report {
    /// A bounce whose status is not 4.x.x is hard.
    pub fn is_hard(&self) -> bool {
        matches!(self, Report::Bounce { status, .. } if !status.starts_with('4'))
    }
}

/// The `Name: value` fields of a block, names lower-cased, folded lines
/// joined.
fn fields(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `rfc822; ada@example.com` → `ada@example.com`; `smtp; 550 …` → `550 …`.
fn typed(value: &str) -> String {
    value
        .split_once(';')
        .map_or(value, |(_, v)| v)
        .trim()
        .to_owned()
}

/// The reports in `raw` (one per recipient of a DSN, one for an ARF
/// report), or why it is not a report.
pub fn parse(raw: &[u8]) -> Result<Vec<Report>, String> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or("the message does not parse")?;
    for part in &message.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let subtype = ct.subtype().unwrap_or("").to_ascii_lowercase();
        if !ct.ctype().eq_ignore_ascii_case("message") {
            continue;
        }
        let body = String::from_utf8_lossy(part.contents()).replace("\r\n", "\n");
        match subtype.as_str() {
            "delivery-status" | "global-delivery-status" => return delivery_status(&body),
            "feedback-report" => return feedback(&body),
            _ => {}
        }
    }
    Err("no message/delivery-status or message/feedback-report part".into())
}

fn delivery_status(body: &str) -> Result<Vec<Report>, String> {
    let mut blocks = body.split("\n\n").filter(|b| !b.trim().is_empty());
    let per_message = fields(blocks.next().ok_or("the delivery status is empty")?);
    let reporting_mta = field(&per_message, "reporting-mta").map(typed);
    let mut reports = Vec::new();
    for block in blocks {
        let f = fields(block);
        let Some(action) = field(&f, "action") else {
            continue;
        };
        let action = action.to_ascii_lowercase();
        if action != "failed" {
            reports.push(Report::NotABounce { action });
            continue;
        }
        let status = field(&f, "status")
            .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
            .filter(|s| {
                let mut parts = s.split('.');
                matches!(parts.next(), Some("2" | "4" | "5"))
                    && parts.clone().count() == 2
                    && parts.all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            })
            .ok_or("a failed recipient has no valid Status (e.g. 5.1.1)")?;
        reports.push(Report::Bounce {
            recipient: field(&f, "final-recipient")
                .or(field(&f, "original-recipient"))
                .map(typed),
            status,
            diagnostic: field(&f, "diagnostic-code").map(typed),
            reporting_mta: reporting_mta.clone(),
        });
    }
    if reports.is_empty() {
        return Err("the delivery status names no recipient with an Action".into());
    }
    Ok(reports)
}

fn feedback(body: &str) -> Result<Vec<Report>, String> {
    let f = fields(body);
    let feedback_type = field(&f, "feedback-type")
        .ok_or("the feedback report has no Feedback-Type")?
        .to_ascii_lowercase();
    Ok(vec![Report::Complaint {
        feedback_type,
        user_agent: field(&f, "user-agent").map(str::to_owned),
    }])
}

/// A DSN as a mail system writes it (for the simulator and tests):
/// `status` 5.x.x or 4.x.x for `recipient`, about `original_headers`.
pub fn dsn(
    reporting_mta: &str,
    recipient: &str,
    status: &str,
    diagnostic: &str,
    original_headers: &str,
) -> String {
    let boundary = "herald-dsn-boundary";
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         Your message could not be delivered to {recipient}.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {reporting_mta}\r\n\
         \r\n\
         Final-Recipient: rfc822; {recipient}\r\n\
         Original-Recipient: rfc822; {recipient}\r\n\
         Action: failed\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; {diagnostic}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         {original_headers}\r\n\
         --{boundary}--\r\n"
    )
}

/// An ARF abuse report (for the simulator and tests).
pub fn arf(reporting_domain: &str, recipient: &str, original_headers: &str) -> String {
    let boundary = "herald-arf-boundary";
    format!(
        "From: abuse@{reporting_domain}\r\n\
         Subject: Complaint about a message\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is an email abuse report for a message sent to {recipient}.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/feedback-report\r\n\
         \r\n\
         Feedback-Type: abuse\r\n\
         User-Agent: herald-sim/1.0\r\n\
         Version: 1\r\n\
         Original-Rcpt-To: {recipient}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         {original_headers}\r\n\
         --{boundary}--\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3464 appendix C's first example, the shape real MTAs send.
    const RFC_3464_EXAMPLE: &str = "Date: Thu, 7 Jul 1994 17:16:05 -0400\r\n\
From: Mail Delivery Subsystem <MAILER-DAEMON@CS.UTK.EDU>\r\n\
Message-Id: <199407072116.RAA14128@CS.UTK.EDU>\r\n\
Subject: Returned mail: Cannot send message for 5 days\r\n\
To: <owner-info-mime@cs.utk.edu>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"RAA14128.773615765/CS.UTK.EDU\"\r\n\
\r\n\
--RAA14128.773615765/CS.UTK.EDU\r\n\
\r\n\
The original message was received at Sat, 2 Jul 1994 17:10:28 -0400\r\n\
\r\n\
--RAA14128.773615765/CS.UTK.EDU\r\n\
content-type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; cs.utk.edu\r\n\
\r\n\
Original-Recipient: rfc822;louisl@larry.slip.umd.edu\r\n\
Final-Recipient: rfc822;louisl@larry.slip.umd.edu\r\n\
Action: failed\r\n\
Status: 4.0.0\r\n\
Diagnostic-Code: smtp; 426 connection timed out\r\n\
Last-Attempt-Date: Thu, 7 Jul 1994 17:15:49 -0400\r\n\
\r\n\
--RAA14128.773615765/CS.UTK.EDU\r\n\
content-type: message/rfc822\r\n\
\r\n\
[original message goes here]\r\n\
\r\n\
--RAA14128.773615765/CS.UTK.EDU--\r\n";

    #[test]
    fn reads_rfc_3464s_example() {
        let reports = parse(RFC_3464_EXAMPLE.as_bytes()).expect("a report");
        assert_eq!(
            reports,
            vec![Report::Bounce {
                recipient: Some("louisl@larry.slip.umd.edu".into()),
                status: "4.0.0".into(),
                diagnostic: Some("426 connection timed out".into()),
                reporting_mta: Some("cs.utk.edu".into()),
            }]
        );
        assert!(!reports[0].is_hard(), "4.x.x is soft");
    }

    #[test]
    fn reads_what_it_writes_and_tells_hard_from_soft() {
        let hard = dsn(
            "mx.example",
            "ada@example.com",
            "5.1.1",
            "550 5.1.1 no such user",
            "Subject: Hi",
        );
        let r = parse(hard.as_bytes()).expect("a report");
        assert!(r[0].is_hard());
        assert!(
            matches!(&r[0], Report::Bounce { diagnostic: Some(d), .. } if d == "550 5.1.1 no such user")
        );
        let complaint =
            parse(arf("isp.example", "ada@example.com", "Subject: Hi").as_bytes()).expect("arf");
        assert_eq!(
            complaint,
            vec![Report::Complaint {
                feedback_type: "abuse".into(),
                user_agent: Some("herald-sim/1.0".into())
            }]
        );
    }

    #[test]
    fn what_is_not_a_report_is_refused_with_the_reason() {
        let plain = "From: a@b\r\nSubject: out of office\r\n\r\nI am away.\r\n";
        assert!(parse(plain.as_bytes())
            .expect_err("an error")
            .contains("no message/delivery-status"));
        let no_status = dsn("mx", "a@b", "bogus", "x", "").replace("Status: bogus\r\n", "");
        assert!(parse(no_status.as_bytes())
            .expect_err("an error")
            .contains("Status"));
        let delayed =
            dsn("mx", "a@b", "4.4.7", "x", "").replace("Action: failed", "Action: delayed");
        assert_eq!(
            parse(delayed.as_bytes()).expect("a value"),
            vec![Report::NotABounce {
                action: "delayed".into()
            }]
        );
    }
}
