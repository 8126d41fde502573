// The page's elements, by role.
export const $ = (id) => document.getElementById(id);
export const el = {
  loginForm: $("login"), nick: $("nick"), loginError: $("login-error"), chat: $("chat"),
  rooms: $("rooms"), dms: $("dms"), joinRoom: $("join-room"), roomName: $("room-name"), me: $("me"),
  title: $("title"), leave: $("leave"), status: $("status"), earlier: $("earlier"),
  scroll: document.querySelector(".scroll"), messages: $("messages"), members: $("members"),
  memberList: $("member-list"), memberCount: $("member-count"), typing: $("typing"),
  composer: $("composer"), text: $("text"), send: $("send"),
  sidebar: $("sidebar"), sidebarToggle: $("sidebar-toggle"), membersToggle: $("members-toggle"),
  search: $("search"), searchText: $("search-text"), results: $("results"), resultsTitle: $("results-title"),
  resultsList: $("results-list"), resultsClose: $("results-close"),
};
