//! Any bytes as an API server's answer to a pod listing: pods or a reason, never a panic;
//! what is kept stays within its caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_export::k8s::{LABELS_CAP, VALUE_CAP, parse_pod_list};

fuzz_target!(|data: &[u8]| {
    if let Ok(page) = parse_pod_list(data) {
        for pod in &page.pods {
            assert!(pod.labels.len() <= LABELS_CAP);
            for (k, v) in pod.attributes() {
                assert!(!k.is_empty() && v.len() <= VALUE_CAP);
            }
            let _ = pod.workload_name();
        }
    }
});
