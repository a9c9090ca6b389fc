//! Spring Kafka's dead-letter headers (`DeadLetterPublishingRecoverer`),
//! so tools and consumers that know that convention read our DLQ topic and
//! we read theirs.
//!
//! In the core every header value is text ([`super::Delivery::headers`]);
//! what differs is the wire: Spring writes the original partition as a
//! 4-byte and the original offset and timestamp as 8-byte big-endian
//! integers, everything else as UTF-8. A bus adapter that speaks Kafka turns
//! the text into those bytes with [`to_wire`] when it produces and back with
//! [`from_wire`] when it consumes; [`from_wire`] also reads the decimal text
//! earlier versions of this service wrote.

pub const EXCEPTION_FQCN: &str = "kafka_dlt-exception-fqcn";
pub const EXCEPTION_CAUSE_FQCN: &str = "kafka_dlt-exception-cause-fqcn";
pub const EXCEPTION_MESSAGE: &str = "kafka_dlt-exception-message";
pub const EXCEPTION_STACKTRACE: &str = "kafka_dlt-exception-stacktrace";
pub const ORIGINAL_TOPIC: &str = "kafka_dlt-original-topic";
pub const ORIGINAL_PARTITION: &str = "kafka_dlt-original-partition";
pub const ORIGINAL_OFFSET: &str = "kafka_dlt-original-offset";
pub const ORIGINAL_TIMESTAMP: &str = "kafka_dlt-original-timestamp";
pub const ORIGINAL_TIMESTAMP_TYPE: &str = "kafka_dlt-original-timestamp-type";
pub const ORIGINAL_CONSUMER_GROUP: &str = "kafka_dlt-original-consumer-group";
/// Not in Spring's set: when the consumer gave up (RFC 3339).
pub const FAILED_AT: &str = "kafka_dlt-failed-at";

/// The exception class our consumers name (Spring consumers name a Java class).
pub const PROJECTION_ERROR_FQCN: &str = "order_service::ProjectionError";

/// Width in bytes of the big-endian integer Spring writes for `name`;
/// `None` for the headers it writes as UTF-8 text.
pub fn binary_width(name: &str) -> Option<usize> {
    match name {
        ORIGINAL_PARTITION => Some(4),
        ORIGINAL_OFFSET | ORIGINAL_TIMESTAMP => Some(8),
        _ => None,
    }
}

/// The bytes a header travels as: a Spring integer header whose text is a
/// number in range becomes its big-endian bytes; anything else its UTF-8.
pub fn to_wire(name: &str, value: &str) -> Vec<u8> {
    match binary_width(name) {
        Some(4) => match value.trim().parse::<i32>() {
            Ok(n) => n.to_be_bytes().to_vec(),
            Err(_) => value.as_bytes().to_vec(),
        },
        Some(_) => match value.trim().parse::<i64>() {
            Ok(n) => n.to_be_bytes().to_vec(),
            Err(_) => value.as_bytes().to_vec(),
        },
        None => value.as_bytes().to_vec(),
    }
}

/// The text of a header as received. A Spring integer header of its exact
/// width is read as big-endian — unless every byte is an ASCII digit (or a
/// leading minus): that is decimal text from an older writer, since no real
/// partition (≥ 808,464,432) or offset/timestamp (≥ 3.4 × 10¹⁸) has such
/// bytes. Other values are read as UTF-8 (invalid sequences replaced).
pub fn from_wire(name: &str, bytes: &[u8]) -> String {
    let decimal_text = !bytes.is_empty()
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 0 && *b == b'-' && bytes.len() > 1));
    match binary_width(name) {
        Some(4) if bytes.len() == 4 && !decimal_text => {
            let mut be = [0u8; 4];
            be.copy_from_slice(bytes);
            i32::from_be_bytes(be).to_string()
        }
        Some(8) if bytes.len() == 8 && !decimal_text => {
            let mut be = [0u8; 8];
            be.copy_from_slice(bytes);
            i64::from_be_bytes(be).to_string()
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// What Spring writes as `kafka_dlt-exception-stacktrace` when there are no
/// frames to show: Java's `Throwable.printStackTrace` first line.
pub fn stacktrace(fqcn: &str, message: &str) -> String {
    format!("{fqcn}: {message}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_headers_travel_as_spring_writes_them() {
        assert_eq!(to_wire(ORIGINAL_PARTITION, "3"), vec![0, 0, 0, 3]);
        assert_eq!(
            to_wire(ORIGINAL_OFFSET, "258"),
            vec![0, 0, 0, 0, 0, 0, 1, 2]
        );
        assert_eq!(
            to_wire(ORIGINAL_TIMESTAMP, "1733400000000"),
            1_733_400_000_000i64.to_be_bytes().to_vec()
        );
        assert_eq!(to_wire(ORIGINAL_TOPIC, "order-events"), b"order-events");
        assert_eq!(
            to_wire(ORIGINAL_PARTITION, "n/a"),
            b"n/a",
            "not a number: text"
        );
    }

    #[test]
    fn both_encodings_read_back_as_text() {
        for (name, text) in [
            (ORIGINAL_PARTITION, "0"),
            (ORIGINAL_PARTITION, "1234"),
            (ORIGINAL_OFFSET, "12345678"),
            (ORIGINAL_OFFSET, "9007199254740993"),
            (ORIGINAL_TIMESTAMP, "1733400000000"),
            (ORIGINAL_OFFSET, "-1"),
        ] {
            assert_eq!(from_wire(name, &to_wire(name, text)), text, "binary {name}");
            assert_eq!(from_wire(name, text.as_bytes()), text, "text {name}");
        }
        // Four digits of text are not mistaken for a 4-byte integer, eight
        // for an 8-byte one.
        assert_eq!(from_wire(ORIGINAL_PARTITION, b"1234"), "1234");
        assert_eq!(from_wire(ORIGINAL_OFFSET, b"87654321"), "87654321");
        assert_eq!(from_wire(ORIGINAL_TOPIC, &[0, 0, 0, 3]), "\0\0\0\u{3}");
        assert_eq!(
            from_wire(EXCEPTION_MESSAGE, "zu spät".as_bytes()),
            "zu spät"
        );
    }
}
