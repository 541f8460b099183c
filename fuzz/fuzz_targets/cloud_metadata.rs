//! Any bytes as a metadata service's answer, to each request of each provider: attributes,
//! a next request, or a reason, never a panic; every attribute value within its cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_export::cloud::{Next, Provider, Step, on_response};
use telegen_export::http::Response;

fuzz_target!(|data: &[u8]| {
    let r = Response {
        status: 200,
        body: data.to_vec(),
        close: true,
        retry_after: None,
    };
    let steps = Provider::ALL
        .into_iter()
        .map(Provider::first_step)
        .chain([Step::AwsDocument("t".into())]);
    for step in steps {
        match on_response(&step, &r) {
            Next::Found(attrs) => {
                for (_, v) in attrs {
                    assert!(!v.is_empty() && v.len() <= 256);
                }
            }
            Next::Ask(Step::AwsDocument(token)) => assert!(!token.contains('\n')),
            _ => {}
        }
    }
});
