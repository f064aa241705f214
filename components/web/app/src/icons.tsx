// The few icons the app draws, as inline SVG: no icon font, no emoji
// (machines without an emoji font show boxes).

const Svg = ({ d }: { d: string }) => (
  <svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true" focusable="false" class="icon">
    <path d={d} fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" />
  </svg>
);

export const ThumbUp = () => <Svg d="M7 11v9H4v-9h3zm0 0 4-8a2 2 0 0 1 2 2v4h5a2 2 0 0 1 2 2.3l-1.2 7A2 2 0 0 1 16.8 20H7" />;
export const ThumbDown = () => <Svg d="M17 13V4h3v9h-3zm0 0-4 8a2 2 0 0 1-2-2v-4H6a2 2 0 0 1-2-2.3l1.2-7A2 2 0 0 1 7.2 4H17" />;
export const Pin = () => <Svg d="M12 17v5M8 3h8l-1 6 3 4H6l3-4-1-6z" />;
