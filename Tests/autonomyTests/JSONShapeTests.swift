import AutonomyCore
import Foundation
import Testing

/// The `--json` outputs users script against, pinned by shape: every key, nested, with the kind
/// of its value. A renamed, dropped or retyped key fails here.
@Suite struct JSONShapeTests {
    static let config = """
        {"version": 1,
         "approvals": { "allowed_signers": "allowed_signers" },
         "task_types": {
           "report": { "safety": "safe", "owner": "ops", "handler": { "exec": { "argv": ["/bin/sh", "-c", "echo '{\\"ok\\":true}'"] } },
                       "verify": [ { "command": { "argv": ["/bin/true"] } } ] },
           "flaky": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/false"] } }, "retry": { "max_attempts": 1 } },
           "send_email": { "safety": "dangerous", "handler": { "exec": { "argv": ["/bin/true"] } },
                           "verify": [ { "command": { "argv": ["/bin/true"] } } ] }
         },
         "gateway": { "daily_cap_usd": 1, "models": [] }}
        """

    /// The shape of a JSON value: object keys sorted with their values' shapes; an array by its
    /// first element; numbers, strings, booleans and null by kind.
    static func shape(_ value: JSONValue) -> String {
        switch value {
        case .object(let fields):
            return "{" + fields.keys.sorted().map { "\($0):\(shape(fields[$0]!))" }.joined(separator: ",") + "}"
        case .array(let items): return "[" + (items.first.map(shape) ?? "") + "]"
        case .string: return "s"
        case .int, .double: return "n"
        case .bool: return "b"
        case .null: return "null"
        }
    }

    func shape(_ sandbox: Sandbox, _ arguments: [String]) async throws -> String {
        let result = try await sandbox.run(arguments)
        #expect(result.status == 0 || arguments.contains("verify"), "\(arguments): \(result.stderr)")
        return Self.shape(try JSONValue.parse(result.stdout))
    }

    @Test func theJSONOutputsKeepTheirShape() async throws {
        let sandbox = try Sandbox(config: Self.config)
        var shapes: [String: String] = [:]
        shapes["enqueue"] = try await shape(sandbox, ["enqueue", "report", "--payload", #"{"n":1}"#, "--json"])
        _ = try await sandbox.run(["enqueue", "flaky"])
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        shapes["approvals"] = try await shape(sandbox, ["approvals", "--json"])
        shapes["approvals show"] = try await shape(sandbox, ["approvals", "show", "1", "--json"])
        shapes["work-once"] = try await shape(sandbox, ["work-once", "--drain", "--json"])
        shapes["tasks list"] = try await shape(sandbox, ["tasks", "list", "--json"])
        shapes["tasks show"] = try await shape(sandbox, ["tasks", "show", "1", "--json"])
        shapes["status"] = try await shape(sandbox, ["status", "--json"])
        shapes["ledger"] = try await shape(sandbox, ["ledger", "--task", "1", "--json"])
        shapes["ledger verify"] = try await shape(sandbox, ["ledger", "verify", "--json"])
        shapes["map"] = try await shape(sandbox, ["map", "--json"])
        shapes["budget"] = try await shape(sandbox, ["budget", "--json"])
        shapes["verify"] = try await shape(sandbox, ["verify", "1", "--json"])
        shapes["config check"] = try await shape(sandbox, ["config", "check", "--json"])
        shapes["heal"] = try await shape(sandbox, ["heal", "--json"])
        let expected: [String: String] = [
            "approvals":
                "[{age_seconds:n,expires_at:s,expires_in_seconds:n,id:n,payload:{to:s},payload_sha256:s,payload_summary:s,reason:s,requested_at:s,source:null,subject:null,task_id:n,type:s}]",
            "approvals show":
                "{age_seconds:n,expires_at:s,expires_in_seconds:n,id:n,payload:{to:s},payload_sha256:s,payload_summary:s,reason:s,requested_at:s,source:null,subject:null,task_id:n,type:s}",
            "budget":
                "{cap_usd:n,day_start:s,last_days:[{cost_usd:n,day:s}],models:[],reserved_usd:n,soft_cap_usd:n,spent_usd:n,window:s}",
            "heal":
                "{attempts:[],breakers_closed:[],breakers_open:[],breakers_opened:[],decisions:[{action:s,finding:s,parameters:{since:s,type:s},reason:s,status:s,subject:s,task:null}],dry_run:b,due:[],enabled:b,findings:[{evidence:{dead:n,signature:s},kind:s,severity:s,subject:s,tasks:[n],title:s}],judged:[],not_run:[],systemic:{active:[s],change:null,failing:[],stopped:b},window_end:s,window_start:s}",
            "config check":
                "{components:[],database:s,file:s,overrides:[],producers:{groups:[],users:[]},signers:n,task_types:[{max_attempts:n,name:s,owner:null,safety:s,timeout:s}],version:n,warnings:[s]}",
            "enqueue":
                "{attempts:n,created_at:s,exit_code:null,finished_at:null,id:n,key:null,last_error:null,lease_expires_at:null,max_attempts:null,payload:{n:n},payload_sha256:s,priority:n,result:null,run_at:s,source:null,started_at:null,state:s,stderr_tail:null,subject:null,type:s,updated_at:s}",
            "ledger":
                "[{at:s,attempt:n,cost_usd:null,detail:{evidence:s,evidence_bytes:n,evidence_sha256:s},duration_ms:n,event:s,id:n,task_id:n,type:s}]",
            "ledger verify":
                "{anchor_mismatches:[],anchors_checked:null,first_broken_row:null,last_hash:s,ok:b,reason:null,rows:n}",
            "map":
                "{components:[],heal:{breakers:[],last_day:{}},overrides:[],since:s,types:[{cost_usd:n,dead:n,done:n,ever_succeeded:b,last_success:null,median_ms:n,name:s,overrides:[],owner:null,p95_ms:n,runs:n,safety:s,shelfware:b,success_rate:n,verification_failures:n,verified:b}],undeclared_types:[]}",
            "status":
                "{by_type:{flaky:{dead:n},report:{done:n},send_email:{awaiting_approval:n}},counts:{awaiting_approval:n,blocked:n,cancelled:n,dead:n,done:n,expired:n,queued:n,rejected:n,running:n,verifying:n},dead:[{finished_at:s,id:n,last_error:s,type:s}],expired_leases:n,heal:{breakers:[],last_day:{}},next_scheduled:null,oldest_runnable:null,overrides:[]}",
            "tasks list":
                "[{attempts:n,created_at:s,exit_code:null,finished_at:null,id:n,key:null,last_error:null,lease_expires_at:null,max_attempts:null,payload:{to:s},payload_sha256:s,priority:n,result:null,run_at:s,source:null,started_at:null,state:s,stderr_tail:null,subject:null,type:s,updated_at:s}]",
            "tasks show":
                "{attempts:n,created_at:s,exit_code:n,finished_at:s,id:n,key:null,last_error:null,lease_expires_at:null,ledger:[{at:s,attempt:null,cost_usd:null,detail:{payload_sha256:s,source:null,state:s},duration_ms:null,event:s,id:n,task_id:n,type:s}],max_attempts:null,payload:{n:n},payload_sha256:s,priority:n,result:{ok:b},run_at:s,source:null,started_at:s,state:s,stderr_tail:null,subject:null,type:s,updated_at:s}",
            "verify": "{change:s,checks:[{duration_ms:n,evidence:s,index:n,looks:n,outcome:s,verifier:s}]}",
            "work-once":
                "{alerts:[],attempts:[{attempt:n,duration_ms:n,error:null,exit_code:n,id:n,state:s,type:s}],expired_approvals:[],recovered:[],skipped:[],stopped:s}",
        ]
        // `ledger export` writes the rows `ledger --json` shows, one canonical line each.
        let export = try await sandbox.run(["ledger", "export"])
        let lines = export.stdout.split(separator: "\n").map(String.init)
        #expect(export.status == 0 && lines.count > 5)
        for line in lines {
            let row = try JSONValue.parse(line)
            #expect(row.canonicalText == line)
            #expect(
                row.objectValue.map { Set($0.keys) } == [
                    "at", "attempt", "cost_usd", "detail", "duration_ms", "event", "id", "task_id", "type",
                ])
        }
        for (command, found) in shapes.sorted(by: { $0.key < $1.key }) {
            #expect(found == expected[command], "\"\(command)\": \"\(found)\",")
        }
    }
}
