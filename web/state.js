// The page's one state object: every module reads and changes the page's
// state through it.
export const MAX_BACKOFF_MS = 30000;
export const TYPING_EVERY_MS = 3000, TYPING_SHOWN_MS = 5000;
export const baseTitle = document.title;

export const state = {
  ws: null, nickname: "", selfId: 0, loggedIn: false, attempts: 0, retryTimer: null,
  // The history's epoch from the last login: with a room's lastSeq it is
  // where a reconnect resumes from (see README, "Resume").
  epoch: "",
  hiddenUnread: 0, takenRetries: 0,
  // Conversations by key: "#room" for rooms, "@id" (or "@id~n", ended) for private ones.
  convs: new Map(),
  current: "#lobby",
  // A search result being shown in context: its room and seq, set while
  // the history page around it is on its way.
  context: null,
  endedDMs: 0,
};
