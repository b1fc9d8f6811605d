import Mustache

/// The dashboard's pages as Mustache templates, compiled once. `{{name}}` is HTML-escaped;
/// `{{{name}}}` is only ever server-made markup (a page's body, an SVG chart), never input.
/// Every page reads without CSS (headings, lists, tables, labelled forms), fits a phone, and
/// follows the platform's dark-mode preference.
enum Templates {
    static let library: MustacheLibrary = {
        var library = MustacheLibrary()
        for (name, text) in sources {
            do {
                try library.register(text, named: name)
            } catch {
                // A test renders every template: a broken one never ships.
                assertionFailure("template \(name): \(error)")
            }
        }
        return library
    }()

    static func render(_ name: String, _ object: Any) -> String {
        library.render(object, withTemplate: name) ?? ""
    }

    static let sources: [String: String] = [
        "layout": layout, "overview": overview, "task": task, "map": map, "audits": audits, "budget": budget,
        "ledger": ledger, "verified": verified, "sources": sourcesPage, "subjects": subjects, "subject": subject,
        "login": login, "decide": decide, "tasks": tasks,
    ]

    static let css = """
        :root{color-scheme:light dark;--fg:#111;--bg:#fff;--muted:#4a4a4a;--line:#bbb;--link:#0645ad;--bad:#a40000;--ok:#0a5c2a;--box:#f3f3f3}
        @media (prefers-color-scheme:dark){:root{--fg:#eee;--bg:#121212;--muted:#c4c4c4;--line:#555;--link:#9cc3ff;--bad:#ff9c9c;--ok:#8fe3b0;--box:#1f1f1f}}
        body{font:16px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg);margin:0 auto;max-width:62rem;padding:0 .75rem 2rem}
        a{color:var(--link)}header nav a{display:inline-block;margin:.25rem .9rem .25rem 0}
        header{border-bottom:2px solid var(--line);padding:.5rem 0}.who{color:var(--muted);margin:0}
        section{border-bottom:1px solid var(--line);padding:.25rem 0 .75rem}h1{font-size:1.5rem}h2{font-size:1.15rem}
        table{border-collapse:collapse;width:100%}th,td{text-align:left;vertical-align:top;padding:.3rem .5rem;border-bottom:1px solid var(--line)}
        .wrap{overflow-x:auto}pre{white-space:pre-wrap;word-break:break-word;background:var(--box);padding:.5rem;max-height:24rem;overflow:auto}pre.whole{max-height:none}
        .bad{color:var(--bad)}.ok{color:var(--ok)}.muted{color:var(--muted)}
        button{font:inherit;min-height:2.75rem;padding:.3rem 1rem;margin:.2rem 0}input,select{font:inherit;padding:.35rem;max-width:100%}
        .item{border:1px solid var(--line);padding:.5rem .75rem;margin:.5rem 0}.item form{display:inline-block;margin-right:.75rem}
        svg{max-width:100%;height:auto}
        """

    static let layout = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="color-scheme" content="light dark">
        <title>{{title}} · autonomy</title>
        <style nonce="{{nonce}}">{{{css}}}</style>
        </head><body>
        <header><nav aria-label="Sections"><a href="/">Overview</a><a href="/map">Map</a><a href="/audits">Audits</a><a href="/budget">Budget</a><a href="/ledger">Ledger</a><a href="/sources">Sources</a><a href="/subjects">Subjects</a></nav>
        {{#operator}}<p class="who">Logged in as {{operator}}</p>{{/operator}}</header>
        <main id="main">
        {{{body}}}
        </main>
        {{#live}}<script nonce="{{nonce}}">
        (function () {
          function busy() {
            var a = document.activeElement;
            if (a && a !== document.body && /^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(a.tagName)) return true;
            var fields = document.querySelectorAll("#main input:not([type=hidden])");
            for (var i = 0; i < fields.length; i++) if (fields[i].value) return true;
            return false;
          }
          setInterval(function () {
            if (document.hidden || busy()) return;
            fetch(location.href, {credentials: "same-origin", headers: {"X-Autonomy-Live": "1"}})
              .then(function (r) { return r.ok ? r.text() : null; })
              .then(function (text) {
                if (!text || busy()) return;
                var next = new DOMParser().parseFromString(text, "text/html").getElementById("main");
                if (next) document.getElementById("main").replaceWith(next);
              }).catch(function () {});
          }, {{refreshMs}});
        })();
        </script>{{/live}}
        </body></html>
        """

    /// Approve and reject buttons for one request; they post to its page, as the logged-in operator.
    static let decide = """
        <form method="post" action="/r/{{id}}"><input type="hidden" name="action" value="approve"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="sha256" value="{{sha256}}"><button type="submit">Approve</button></form>
        <form method="post" action="/r/{{id}}"><input type="hidden" name="action" value="reject"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="sha256" value="{{sha256}}"><label>Why reject <input name="reason" required></label> <button type="submit">Reject</button></form>
        """

    static let overview = """
        <h1>Overview</h1>
        <p class="muted">As of {{now}}. This page refreshes on its own.</p>
        <section aria-labelledby="waiting"><h2 id="waiting">Waiting for you: {{waitingCount}}</h2>
        {{^has_approvals}}<p class="ok">Nothing needs you.</p>{{/has_approvals}}
        {{#more}}<p>The oldest {{listed}} are here; <code>autonomy approvals</code> lists every one.</p>{{/more}}
        {{#approvals}}<div class="item"><p><a href="/r/{{id}}"><strong>{{type}}</strong>, task {{taskID}}</a> — {{reason}}</p>
        <p class="muted">Source (producer-supplied): {{source}} · Subject (producer-supplied): {{subject}} · waiting {{waited}} · expires {{expires}}</p>
        <pre{{#whole}} class="whole"{{/whole}}>{{payload}}</pre>
        {{#altered}}<p class="bad"><strong>Do not act on this request:</strong> its payload does not match the SHA-256 it was requested for (the database was changed outside autonomy). It cannot be decided.</p>{{/altered}}
        {{^altered}}{{#noKey}}<p class="muted">This server has no signing key: decide with <code>autonomy approve {{id}}</code>.</p>{{/noKey}}{{/altered}}
        {{#decides}}{{> decide}}{{/decides}}{{^whole}}<p><a href="/r/{{id}}">The payload is long: open it to read it whole{{^noKey}} and decide{{/noKey}}</a></p>{{/whole}}</div>{{/approvals}}
        </section>
        <section aria-labelledby="queue"><h2 id="queue">Queue</h2>
        <div class="wrap"><table><caption class="muted">Tasks by state</caption><thead><tr><th scope="col">State</th><th scope="col">Tasks</th></tr></thead><tbody>
        {{#states}}<tr><td><a href="/tasks?state={{name}}">{{name}}</a></td><td>{{count}}</td></tr>{{/states}}
        </tbody></table></div>
        <p>{{#oldest}}Oldest runnable: <a href="/tasks/{{id}}">task {{id}} ({{type}})</a>, waiting {{age}}.{{/oldest}}{{^oldest}}Nothing runnable is waiting.{{/oldest}}
        {{#has_expiredLeases}} <span class="bad">{{expiredLeases}} lease(s) ran out: the next work-once recovers them.</span>{{/has_expiredLeases}}</p>
        </section>
        <section aria-labelledby="day"><h2 id="day">Last 24 hours</h2>
        <p>{{done}} done, <span class="{{#has_dead}}bad{{/has_dead}}">{{dead}} dead</span>.</p>
        {{{sparkline}}}
        </section>
        <section aria-labelledby="spend"><h2 id="spend"><a href="/budget">Spend</a></h2>
        <p class="{{#overCap}}bad{{/overCap}}">{{spend}}</p>
        {{{spendBars}}}
        </section>
        <section aria-labelledby="health"><h2 id="health">Shelfware and dead tasks</h2>
        {{#has_shelfware}}<p>Declared, with no success in 30 days: {{#shelfware}}<a href="/map">{{.}}</a> {{/shelfware}}</p>{{/has_shelfware}}
        {{^shelfware}}<p class="ok">Every declared type succeeded within 30 days.</p>{{/shelfware}}
        {{#has_deadTasks}}<ul>{{#deadTasks}}<li><a href="/tasks/{{id}}">task {{id}} ({{type}})</a> {{when}}: {{error}}</li>{{/deadTasks}}</ul>{{/has_deadTasks}}
        {{^deadTasks}}<p class="ok">No dead task.</p>{{/deadTasks}}
        </section>
        <section aria-labelledby="oracle"><h2 id="oracle"><a href="/audits">The Oracle</a></h2>
        <p>{{openProposals}} fix proposal(s) open.</p>
        {{#audit}}<p>Last audit, {{at}}: {{headline}}</p>{{/audit}}{{^audit}}<p class="muted">No audit has run yet (autonomy audit).</p>{{/audit}}
        </section>
        <section aria-labelledby="heal"><h2 id="heal">Heal</h2>
        {{#has_breakers}}<ul>{{#breakers}}<li class="bad">Breaker open for {{target}} until {{closes}}: {{reason}}</li>{{/breakers}}</ul>{{/has_breakers}}
        {{^breakers}}<p class="ok">No breaker is open.</p>{{/breakers}}
        </section>
        <section aria-labelledby="alerts"><h2 id="alerts">Alerts not gone out</h2>
        {{#has_failedAlerts}}<ul>{{#failedAlerts}}<li class="bad">{{event}} via {{channel}}{{#taskID}} (<a href="/tasks/{{taskID}}">task {{taskID}}</a>){{/taskID}}, {{attempts}} tries: {{error}}</li>{{/failedAlerts}}</ul>{{/has_failedAlerts}}
        {{^failedAlerts}}<p class="ok">Every alert went out.</p>{{/failedAlerts}}
        </section>
        """

    static let tasks = """
        <h1>Tasks{{#filter}}: {{filter}}{{/filter}}</h1>
        {{#error}}<p class="bad">{{error}}</p>{{/error}}
        <p class="muted">The newest 100. <a href="/tasks">All states</a></p>
        <div class="wrap"><table><thead><tr><th scope="col">Task</th><th scope="col">Type</th><th scope="col">State</th><th scope="col">Source</th><th scope="col">Subject</th><th scope="col">Updated</th><th scope="col">Last error</th></tr></thead><tbody>
        {{#tasks}}<tr><td><a href="/tasks/{{id}}">{{id}}</a></td><td>{{type}}</td><td>{{state}}</td><td>{{source}}</td><td>{{subject}}</td><td>{{updated}}</td><td>{{error}}</td></tr>{{/tasks}}
        </tbody></table></div>
        {{^tasks}}<p class="muted">No task matches.</p>{{/tasks}}
        """

    static let task = """
        <h1>Task {{id}}: {{type}}</h1>
        <div class="wrap"><table><tbody>
        <tr><th scope="row">State</th><td>{{state}}</td></tr>
        <tr><th scope="row">Source (producer-supplied)</th><td>{{#source}}<a href="/sources">{{source}}</a>{{/source}}{{^source}}none{{/source}}</td></tr>
        <tr><th scope="row">Subject (producer-supplied)</th><td>{{#subject}}<a href="/subject?name={{subjectQuery}}">{{subject}}</a>{{/subject}}{{^subject}}none{{/subject}}</td></tr>
        <tr><th scope="row">Attempts</th><td>{{attempts}}</td></tr>
        <tr><th scope="row">Runs at</th><td>{{runAt}}</td></tr>
        <tr><th scope="row">Created</th><td>{{created}}</td></tr>
        <tr><th scope="row">Finished</th><td>{{finished}}</td></tr>
        <tr><th scope="row">Exit code</th><td>{{exitCode}}</td></tr>
        <tr><th scope="row">Last error</th><td>{{lastError}}</td></tr>
        <tr><th scope="row">Payload SHA-256</th><td><code>{{payloadSHA256}}</code></td></tr>
        </tbody></table></div>
        <h2>Payload</h2><pre>{{payload}}</pre>
        <h2>Result</h2><pre>{{result}}</pre>
        <h2>Standard error (tail)</h2><pre>{{stderr}}</pre>
        <h2>Verifications</h2>
        {{#has_verifications}}<ul>{{#verifications}}<li>{{at}} {{event}}: {{detail}}</li>{{/verifications}}</ul>{{/has_verifications}}
        {{^verifications}}<p class="muted">None recorded.</p>{{/verifications}}
        <h2>Timeline (the ledger)</h2>
        <div class="wrap"><table><thead><tr><th scope="col">When</th><th scope="col">Event</th><th scope="col">Attempt</th><th scope="col">Detail</th></tr></thead><tbody>
        {{#timeline}}<tr><td>{{at}}</td><td>{{event}}</td><td>{{attempt}}</td><td><code>{{detail}}</code></td></tr>{{/timeline}}
        </tbody></table></div>
        """

    static let map = """
        <h1>The system map</h1>
        <p class="muted">Figures over the last {{window}}, since {{since}}. Shelfware: declared, and no success in 30 days.
        Window: {{#windows}}{{#current}}<strong>{{name}}</strong>{{/current}}{{^current}}<a href="/map?since={{name}}">{{name}}</a>{{/current}} {{/windows}}</p>
        <div class="wrap"><table><thead><tr><th scope="col">Type</th><th scope="col">Owner</th><th scope="col">Safety</th><th scope="col">Runs</th><th scope="col">Success</th><th scope="col">p95</th><th scope="col">Cost</th><th scope="col">Last success</th><th scope="col">Overrides</th><th scope="col">Shelfware</th></tr></thead><tbody>
        {{#types}}<tr><td>{{name}}</td><td>{{owner}}</td><td>{{safety}}</td><td>{{runs}}</td><td>{{rate}}</td><td>{{p95}}</td><td>{{cost}}</td><td>{{lastSuccess}}</td><td>{{overrides}}</td><td>{{#shelfware}}<strong class="bad">shelfware</strong>{{/shelfware}}{{^shelfware}}no{{/shelfware}}</td></tr>{{/types}}
        </tbody></table></div>
        <h2>Components</h2>
        <div class="wrap"><table><thead><tr><th scope="col">Component</th><th scope="col">Owner</th><th scope="col">Runs</th><th scope="col">Done</th><th scope="col">Dead</th><th scope="col">Cost</th><th scope="col">Last success</th><th scope="col">Shelfware</th></tr></thead><tbody>
        {{#components}}<tr><td>{{name}}</td><td>{{owner}}</td><td>{{runs}}</td><td>{{done}}</td><td>{{dead}}</td><td>{{cost}}</td><td>{{lastSuccess}}</td><td>{{#shelfware}}<strong class="bad">shelfware</strong>{{/shelfware}}{{^shelfware}}no{{/shelfware}}</td></tr>{{/components}}
        </tbody></table></div>
        {{#has_undeclared}}<p class="bad">In the ledger but no longer declared: {{#undeclared}}{{.}} {{/undeclared}}</p>{{/has_undeclared}}
        """

    static let audits = """
        <h1>Audits</h1>
        <section aria-labelledby="proposals"><h2 id="proposals">Fix proposals waiting</h2>
        {{^proposals}}<p class="ok">None.</p>{{/proposals}}
        {{#proposals}}<div class="item"><p><a href="/r/{{id}}">Proposal {{taskID}}</a> — {{reason}}</p><pre{{#whole}} class="whole"{{/whole}}>{{payload}}</pre>
        {{#whole}}{{> decide}}{{/whole}}{{^whole}}<p><a href="/r/{{id}}">The payload is long: open it to read it whole and decide</a></p>{{/whole}}</div>{{/proposals}}
        </section>
        {{^runs}}<p class="muted">No audit has run yet (autonomy audit).</p>{{/runs}}
        {{#runs}}<section><h2>Audit {{id}}, {{at}}</h2><p>{{headline}}</p><p class="muted">Window {{from}} to {{to}}.</p>
        {{#has_findings}}<ul>{{#findings}}<li><strong>{{severity}}</strong> {{kind}}{{#subject}} ({{subject}}){{/subject}}: {{title}}</li>{{/findings}}</ul>{{/has_findings}}
        {{#has_proposals}}<p>Proposed: {{#proposals}}<a href="/tasks/{{taskID}}">{{action}} (task {{taskID}}, {{state}})</a> {{/proposals}}</p>{{/has_proposals}}
        </section>{{/runs}}
        """

    static let budget = """
        <h1>Budget</h1>
        <p class="{{#overCap}}bad{{/overCap}}">{{spend}}</p>
        <p>Reserved by calls under way: {{reserved}}. Soft cap (free models only past it): {{softCap}}.</p>
        <h2>The last 7 days</h2>{{{bars}}}
        <div class="wrap"><table><thead><tr><th scope="col">Day</th><th scope="col">Spent</th></tr></thead><tbody>
        {{#days}}<tr><td>{{day}}</td><td>{{cost}}</td></tr>{{/days}}</tbody></table></div>
        <h2>Per model, today</h2>
        <div class="wrap"><table><thead><tr><th scope="col">Model</th><th scope="col">Calls</th><th scope="col">Tokens in</th><th scope="col">Tokens out</th><th scope="col">Cost</th></tr></thead><tbody>
        {{#models}}<tr><td>{{model}}</td><td>{{calls}}</td><td>{{input}}</td><td>{{output}}</td><td>{{cost}}</td></tr>{{/models}}
        </tbody></table></div>
        <h2>Reservations open</h2>
        {{^reservations}}<p class="muted">None.</p>{{/reservations}}
        {{#has_reservations}}<ul>{{#reservations}}<li>{{model}}: {{amount}} since {{since}}{{#taskID}} (<a href="/tasks/{{taskID}}">task {{taskID}}</a>){{/taskID}}</li>{{/reservations}}</ul>{{/has_reservations}}
        <h2>Deferred for the budget (last 50)</h2>
        {{^deferrals}}<p class="muted">None.</p>{{/deferrals}}
        {{#has_deferrals}}<ul>{{#deferrals}}<li>{{at}}: {{#taskID}}<a href="/tasks/{{taskID}}">task {{taskID}}</a> {{/taskID}}({{type}})</li>{{/deferrals}}</ul>{{/has_deferrals}}
        """

    static let ledger = """
        <h1>Ledger</h1>
        <form method="get" action="/ledger"><p>
        <label>Task <input name="task" inputmode="numeric" value="{{task}}" size="8"></label>
        <label>Type <input name="type" value="{{type}}" size="14"></label>
        <label>Event <input name="event" value="{{event}}" size="14"></label>
        <label>Since <input name="since" value="{{since}}" size="6" placeholder="24h"></label>
        <button type="submit">Search</button></p></form>
        <form method="post" action="/ledger/verify"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Verify the whole chain</button></form>
        {{#error}}<p class="bad">{{error}}</p>{{/error}}
        <div class="wrap"><table><thead><tr><th scope="col">Row</th><th scope="col">When</th><th scope="col">Task</th><th scope="col">Type</th><th scope="col">Event</th><th scope="col">Detail</th></tr></thead><tbody>
        {{#rows}}<tr><td>{{id}}</td><td>{{at}}</td><td>{{#taskID}}<a href="/tasks/{{taskID}}">{{taskID}}</a>{{/taskID}}</td><td>{{type}}</td><td>{{event}}</td><td><code>{{detail}}</code></td></tr>{{/rows}}
        </tbody></table></div>
        {{^rows}}<p class="muted">No row matches.</p>{{/rows}}
        {{#next}}<p><a href="{{next}}">Older rows</a></p>{{/next}}
        """

    static let verified = """
        <h1>Ledger verified: {{#intact}}<span class="ok">intact</span>{{/intact}}{{^intact}}<span class="bad">broken</span>{{/intact}}</h1>
        <p>{{summary}}</p>
        <p><a href="/ledger">Back to the ledger</a></p>
        """

    static let sourcesPage = """
        <h1>Sources: who asked</h1>
        <div class="wrap"><table><thead><tr><th scope="col">Producer</th><th scope="col">Tasks</th><th scope="col">Done</th><th scope="col">Dead</th><th scope="col">Success</th><th scope="col">Cost</th><th scope="col">Dangerous requests</th><th scope="col">Last activity</th></tr></thead><tbody>
        {{#sources}}<tr><td>{{name}}{{^listed}} <span class="muted">(no longer listed)</span>{{/listed}}</td><td>{{tasks}}</td><td>{{done}}</td><td>{{dead}}</td><td>{{rate}}</td><td>{{cost}}</td><td>{{dangerous}}</td><td>{{last}}</td></tr>{{/sources}}
        </tbody></table></div>
        {{^sources}}<p class="muted">No producer yet.</p>{{/sources}}
        """

    static let subjects = """
        <h1>Subjects: who it was for</h1>
        <form method="get" action="/subjects"><p><label>Search <input name="search" value="{{search}}"></label> <button type="submit">Search</button></p></form>
        <div class="wrap"><table><thead><tr><th scope="col">Subject</th><th scope="col">Tasks</th><th scope="col">Done</th><th scope="col">Dead</th><th scope="col">Types</th><th scope="col">Cost</th><th scope="col">Last</th></tr></thead><tbody>
        {{#subjects}}<tr><td><a href="/subject?name={{query}}">{{name}}</a></td><td>{{tasks}}</td><td>{{done}}</td><td>{{dead}}</td><td>{{types}}</td><td>{{cost}}</td><td>{{last}}</td></tr>{{/subjects}}
        </tbody></table></div>
        {{^subjects}}<p class="muted">No subject matches.</p>{{/subjects}}
        """

    static let subject = """
        <h1>{{name}}</h1>
        <p>{{count}} task(s), {{cost}} in all.{{#more}} The most recent {{shown}} are listed; <code>autonomy subject</code> lists every one.{{/more}}</p>
        <div class="wrap"><table><thead><tr><th scope="col">When</th><th scope="col">Task</th><th scope="col">Type</th><th scope="col">State</th><th scope="col">Source</th><th scope="col">Cost</th><th scope="col">Decision</th></tr></thead><tbody>
        {{#tasks}}<tr><td>{{created}}</td><td><a href="/tasks/{{id}}">{{id}}</a></td><td>{{type}}</td><td>{{state}}</td><td>{{source}}</td><td>{{cost}}</td><td>{{decision}}</td></tr>{{/tasks}}
        </tbody></table></div>
        """

    static let login = """
        <h1>Log in first</h1>
        <p>On the server, run <code>autonomy serve login --operator NAME</code> and open the link it prints. It works once, for 10 minutes.</p>
        """
}
