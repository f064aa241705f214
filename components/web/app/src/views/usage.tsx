// Token usage as a bar chart (one bar a day, stacked by model) and a table;
// plain DOM and CSS, no chart library.

import { Table } from "../ui";

export interface UsageRow {
  day?: string;
  key?: string;
  model?: string | null;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

export function UsageChart({ rows }: { rows: UsageRow[] }) {
  const days = [...new Set(rows.map((r) => r.day ?? r.key ?? ""))];
  const models = [...new Set(rows.map((r) => r.model ?? "all"))];
  const totals = days.map((d) => rows.filter((r) => (r.day ?? r.key) === d).reduce((sum, r) => sum + r.totalTokens, 0));
  const max = Math.max(1, ...totals);
  if (rows.length === 0) return <p class="muted">No usage in this period.</p>;
  return (
    <figure class="chart">
      <div class="bars" role="img" aria-label={`Tokens per day, ${days.length} days, at most ${max}`}>
        {days.map((d, i) => (
          <div class="bar" key={d} title={`${d}: ${totals[i]} tokens`}>
            {models.map((m, j) => {
              const tokens = rows.filter((r) => (r.day ?? r.key) === d && (r.model ?? "all") === m).reduce((s, r) => s + r.totalTokens, 0);
              // Set through the CSSOM (allowed by the CSP, unlike style attributes).
              return tokens ? <span key={m} class={`segment series-${j % 6}`} style={{ height: `${(tokens / max) * 100}%` }} /> : null;
            })}
          </div>
        ))}
      </div>
      <figcaption class="legend">
        {models.map((m, j) => (
          <span key={m} class={`swatch series-${j % 6}`}>
            {m}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}

export function UsageTable({ rows }: { rows: UsageRow[] }) {
  return (
    <>
      <UsageChart rows={rows} />
      <Table headings={["Day", "Model", "Generations", "Prompt tokens", "Answer tokens"]}>
        {rows.map((r) => (
          <tr key={`${r.day ?? r.key}-${r.model}`}>
            <td>{r.day ?? r.key}</td>
            <td>{r.model ?? "—"}</td>
            <td>{r.requests}</td>
            <td>{r.promptTokens}</td>
            <td>{r.completionTokens}</td>
          </tr>
        ))}
      </Table>
    </>
  );
}
