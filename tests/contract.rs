//! The service serves its contract, the document schemathesis checks it
//! against (`scripts/schemathesis`).

mod common;

use common::*;

#[test]
fn openapi_document_is_served_as_json() {
    let dir = TempDir::new("contract");
    let server = Server::start(&dir);
    let reply = server.get("/openapi.json");
    assert_eq!(reply.status, 200);
    assert!(reply.is_json(), "{:?}", reply.headers);
    let document = reply.json();
    assert_eq!(document.str_of("openapi"), "3.0.3");
    assert!(
        document
            .get("paths")
            .and_then(|p| p.get("/tasks/{id}"))
            .is_some()
    );
    assert_eq!(server.post("/openapi.json", "").status, 405);
}
