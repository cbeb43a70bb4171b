// What the demo's SDK page (clients/js/demo/wk.html) imports from WuKongIM's SDK,
// bundled into one ES module by demo/build.js (the package ships no browser build).
export { default as WKSDK } from 'wukongimjssdk';
export { ConnectStatus } from 'wukongimjssdk/lib/connect_manager';
export { Channel, MessageText } from 'wukongimjssdk/lib/model';
